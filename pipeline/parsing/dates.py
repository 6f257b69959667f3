"""Dates as the Cisco tools and openssl print them, read as aware UTC datetimes whatever the locale."""

from __future__ import annotations

import re
from datetime import datetime

from pipeline.parsing.text import ParseError


def parse_openssl_enddate(line: str) -> datetime:
    """`notAfter=Oct  5 12:16:56 2034 GMT` (`openssl x509 -enddate -noout`) as an aware UTC datetime."""
    key, sep, value = line.strip().partition("=")
    if not sep or key != "notAfter":
        raise ParseError("expected 'notAfter=<Mmm dd HH:MM:SS yyyy> GMT' from openssl x509 -enddate")
    return gmt_date_utc(value)


def gmt_date_utc(text: str) -> datetime:
    """`Oct 9 10:12:50 2034 GMT` (generate_certs.pl) or `Oct  9 ...` (openssl) as an aware UTC datetime."""
    return _parse_date(text, expected="a date like 'Oct 9 10:12:50 2034 GMT'")


def ctime_utc(text: str) -> datetime:
    """A date as sftunnel_status.pl prints it (`Mon Oct 14 12:42:10 2024`, optional ` UTC`), as UTC."""
    return _parse_date(text, expected="a ctime date like 'Mon Oct 14 12:42:10 2024 UTC'")


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE = re.compile(
    r"(?:[A-Z][a-z]{2} +)?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) +"
    r"(?P<time>\d\d:\d\d:\d\d) +(?P<year>\d{4})(?: +(?:UTC|GMT))?"
)


def _parse_date(text: str, *, expected: str) -> datetime:
    """English month names whatever the locale (strptime's %b is not); the devices print UTC."""
    match = _DATE.fullmatch(text.strip())
    if match is None or match["mon"] not in _MONTHS:
        raise ParseError(f"expected {expected}")
    day = f"{int(match['day']):02d}"
    month = f"{_MONTHS.index(match['mon']) + 1:02d}"
    try:
        return datetime.fromisoformat(f"{match['year']}-{month}-{day}T{match['time']}+00:00")
    except ValueError:
        raise ParseError(f"expected {expected}; the date does not exist") from None
