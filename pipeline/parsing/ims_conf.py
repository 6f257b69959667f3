"""`/etc/sf/ims.conf`, the FMC's shell-style settings file (device-facts 5.1)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pipeline.parsing.text import stripped_lines


def parse_ims_conf(text: str) -> Mapping[str, str]:
    """`/etc/sf/ims.conf` as `KEY=VALUE` (device-facts 5.1): split on the first `=`, matching quotes stripped.

    Blank lines, `#` comments and lines without `=` are skipped: only some keys of the file are known, and
    we read keys from it rather than validate it. A repeated key keeps its last value, as a shell would.
    """
    values: dict[str, str] = {}
    for line in stripped_lines(text):
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#") or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return MappingProxyType(values)
