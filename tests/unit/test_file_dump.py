"""How a many-file read comes back from a device (`pipeline.devices.files.decode_dump`): the sizes, the
device's digests and one base64 stream, cut and checked here. The output below is what GNU `stat -c "%s %n"`,
`sha256sum` and `base64` print for the files; the lab tests read real files over SSH the same way."""

from __future__ import annotations

import base64
import hashlib
import textwrap

import pytest

from pipeline.devices.files import decode_dump

TAG = "SFTRF0123456789ab"
FILES = {"/etc/sf/a.pem": b"-----BEGIN-----\nabc\n", "/etc/sf/empty": b"", "/etc/sf/b.bin": bytes(range(256))}


def dump(files: dict[str, bytes], *, sizes: dict[str, int] | None = None, stream: bytes | None = None) -> str:
    sized = "".join(f"{(sizes or {}).get(p, len(d))} {p}\n" for p, d in files.items())
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in files.items())
    data = base64.b64encode(b"".join(files.values()) if stream is None else stream).decode()
    wrapped = "\n".join(textwrap.wrap(data, 76)) + "\n" if data else ""
    return f"{TAG} n\n{sized}{TAG} s\n{sums}{TAG} d\n{wrapped}{TAG} e\n"


def test_every_file_comes_back_byte_for_byte_empty_ones_included() -> None:
    assert decode_dump("echo of the command\n" + dump(FILES), TAG) == FILES


def test_no_file_is_an_empty_read() -> None:
    assert decode_dump(dump({}), TAG) == {}


def test_a_stream_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(ValueError, match="came back short or long"):
        decode_dump(dump(FILES, stream=b"".join(FILES.values())[:-1]), TAG)


def test_bytes_that_do_not_match_the_device_digest_are_refused() -> None:
    swapped = dict(FILES, **{"/etc/sf/a.pem": b"-----BEGIN-----\nabd\n"})
    text = dump(FILES, stream=b"".join(swapped.values()))
    with pytest.raises(ValueError, match=r"checksum mismatch reading /etc/sf/a\.pem"):
        decode_dump(text, TAG)


def test_a_read_that_failed_on_the_device_is_refused() -> None:
    text = dump(FILES)
    cut = text[: text.index(f"{TAG} d")]  # stat and sha256sum ran, then the chain stopped
    with pytest.raises(ValueError, match="failed on the device or was cut short"):
        decode_dump(cut, TAG)
    with pytest.raises(ValueError, match="failed on the device or was cut short"):
        decode_dump(text.replace(f"{TAG} s\n", ""), TAG)


def test_lists_out_of_step_are_refused() -> None:
    text = dump(FILES).replace("  /etc/sf/empty", "  /etc/sf/other")
    with pytest.raises(ValueError, match="out of step with the file list at /etc/sf/empty"):
        decode_dump(text, TAG)
    with pytest.raises(ValueError, match="garbled data"):
        decode_dump(dump(FILES).replace(f"{TAG} d\n", f"{TAG} d\n!!\n"), TAG)
