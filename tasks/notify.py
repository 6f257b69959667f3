"""Telling people (`SFTRENEW_NOTIFY`, apprise URLs): a notice is sent, or its failure logged; never more.

A notifier that fails (a mail server down, a webhook refusing) must not fail a renewal that did its job, nor
hide it: it is logged at WARNING with the service's kind, never with its URL (URLs carry tokens). Apprise is
imported only when someone is to be told: it loads its many service plugins, which a worker without
notifications need not hold.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.notices import Notice, notify_urls
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def wanted(settings: Settings) -> bool:
    """Someone is to be told: callers build a notice (which may read the record) only then."""
    return bool(_urls(settings))


def _urls(settings: Settings) -> list[str]:
    return notify_urls(settings.notify.get_secret_value()) if settings.notify else []


def notify(settings: Settings, notice: Notice) -> bool:
    """Send `notice` to every URL of `SFTRENEW_NOTIFY`; True when each took it. Never raises."""
    urls = _urls(settings)
    if not urls:
        return False
    try:
        return _send(urls, notice)
    except Exception as exc:  # a notifier's trouble is logged, never the renewal's
        log.warning("notification %r not sent: %s", notice.title, type(exc).__name__)
        return False


def _send(urls: list[str], notice: Notice) -> bool:
    import apprise  # noqa: PLC0415 - loaded only when someone is to be told (see the module docstring)

    sender: Any = apprise.Apprise()
    understood = True
    for number, url in enumerate(urls, 1):
        if not sender.add(url):
            # The URL itself may hold a token: say which entry, not what it says.
            log.warning(
                "SFTRENEW_NOTIFY: entry %d is not an apprise URL apprise understands; skipped", number
            )
            understood = False
    if not len(sender):
        return False
    kinds = {
        "info": apprise.NotifyType.INFO,
        "success": apprise.NotifyType.SUCCESS,
        "warning": apprise.NotifyType.WARNING,
        "failure": apprise.NotifyType.FAILURE,
    }
    sent = bool(sender.notify(title=notice.title, body=notice.body, notify_type=kinds[notice.level]))
    if not sent:
        log.warning("notification %r not delivered to every SFTRENEW_NOTIFY entry", notice.title)
    return sent and understood
