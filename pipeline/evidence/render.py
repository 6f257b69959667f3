"""The evidence pack for people: one self-contained HTML page that prints well, or Markdown (pure).

Jinja2 templates shipped with the package (`templates/`), HTML autoescaped; no URL, font or script is
fetched by the page. Both show the SHA-256 and HMAC key id of the sealed JSON pack they were made with, so
a printout can be tied to a file `sftrenew report --check` accepts.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Final, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pipeline.evidence.model import EvidencePack
from pipeline.evidence.seal import SealedPack

Format = Literal["html", "md"]
TEMPLATES: Final[dict[Format, str]] = {"html": "evidence.html.j2", "md": "evidence.md.j2"}
#: States read as good, bad or in between; the text is always there too (it reads without colour).
GOOD: Final = frozenset({"succeeded", "verified", "skipped"})
BAD: Final = frozenset({"failed", "refused", "partial", "interrupted"})


def render(pack: EvidencePack, fmt: Format, *, sealed: SealedPack) -> str:
    """The pack as an HTML page or a Markdown document."""
    return _environment().get_template(TEMPLATES[fmt]).render(pack=pack, sealed=sealed)


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline.evidence", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(when=when, dash=dash, cell=cell, tone=tone)
    return env


def when(value: datetime | None) -> str:
    """`2026-11-27 09:00:03 UTC`; a dash for none."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "—"


def dash(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


def cell(value: object) -> str:
    """A value in a Markdown table cell: one line, pipes and backticks escaped."""
    text = dash(value)
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def tone(state: str | None) -> str:
    """The CSS class of a state: good, bad or other."""
    if state in GOOD:
        return "good"
    if state in BAD or (state is not None and state[:1].isupper()):
        return "bad"  # a verdict's kind (NotConnected, WrongCa, Unreachable) is a bad verdict
    return "other"
