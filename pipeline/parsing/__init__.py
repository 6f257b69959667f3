"""Readers for what the Cisco tools print: sftunnel_status.pl, generate_certs.pl, FAILED_PUSH, ims.conf.

Pure (STYLE lesson 1): text in, frozen facts out. Lines are recognised by their words, never by their
indentation (tabs, spaces or none: device-facts 2.2 and 2.3), so a pty transcript with stderr merged in,
prompts and echoed answers still parses. Text that is not the expected tool's output at all raises
`ParseError` (a `ValueError`) naming what was expected and, where it applies, the 1-based line number;
messages never repeat the input.

One module per tool (`tunnel_status`, `generate_certs`, `ims_conf`), plus `dates` and the shared `text`;
callers import from `pipeline.parsing`.
"""

from __future__ import annotations

from pipeline.parsing.dates import ctime_utc, gmt_date_utc, parse_openssl_enddate
from pipeline.parsing.generate_certs import (
    FailedPush,
    FailedPushLine,
    RegenOutput,
    parse_failed_push,
    parse_generate_certs,
)
from pipeline.parsing.ims_conf import parse_ims_conf
from pipeline.parsing.text import ParseError
from pipeline.parsing.tunnel_status import (
    PeerTunnel,
    TunnelStatusReport,
    parse_tunnel_status,
    parse_tunnel_status_brief,
)

__all__ = [
    "FailedPush",
    "FailedPushLine",
    "ParseError",
    "PeerTunnel",
    "RegenOutput",
    "TunnelStatusReport",
    "ctime_utc",
    "gmt_date_utc",
    "parse_failed_push",
    "parse_generate_certs",
    "parse_ims_conf",
    "parse_openssl_enddate",
    "parse_tunnel_status",
    "parse_tunnel_status_brief",
]
