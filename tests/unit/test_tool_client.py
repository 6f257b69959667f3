"""The lab's control wire format (`sftlab.tools.client`): both ends, and what a tool process imports.

A tool runs as a process of its own for every `pmtool` a push types, so what it imports is CPU the lab
charges to the product on a shared machine; the last test keeps the heavy modules out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sftlab.tools import client


def test_a_reply_reads_back_as_it_was_sent_with_any_text() -> None:
    reply = {"stdout": "état: ok\n\x1b[0m", "stderr": "warn \udcff\n", "code": 3}
    back = client.decode_reply(client.encode_reply(reply))
    assert back == {"stdout": "état: ok\n\x1b[0m", "stderr": "warn \ufffd\n", "code": 3}


def test_a_reply_cut_short_is_refused() -> None:
    data = client.encode_reply({"stdout": "0123456789", "stderr": "", "code": 0})
    with pytest.raises(ValueError, match="its header says 10"):
        client.decode_reply(data[:-1])
    with pytest.raises(ValueError, match="no header line"):
        client.decode_reply(b"")


def test_a_request_is_a_json_line_the_server_reads() -> None:
    request = {"op": "status", "device": "ftd-001", "peer": None, "quote": 'a"b\\c\n'}
    line = client.encode_request(request)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == request


def test_a_request_field_that_is_not_text_is_refused() -> None:
    with pytest.raises(TypeError, match="'peer' must be a string or None"):
        client.encode_request({"op": "status", "peer": 3})


def test_a_tool_process_imports_none_of_the_heavy_modules() -> None:
    home = str(Path(client.__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {home!r}); import sftlab.tools.programs; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-S", "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "sftlab.tools.programs" in loaded
    assert loaded.isdisjoint({"asyncio", "json", "socket", "typing", "pathlib", "re", "enum"})
