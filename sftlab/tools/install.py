"""Putting the Cisco tools on a simulated device's PATH, and the shims every lab shell has.

Host-side (the lab process, at compose time); the tools themselves are `sftlab.tools.programs`.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Sequence
from pathlib import Path

TOOLS_FMC = ("sftunnel_status.pl", "generate_certs.pl", "pmtool")
TOOLS_FTD = ("sftunnel_status.pl", "pmtool")


def install_tools(bin_dir: Path, names: Sequence[str], *, python: str = sys.executable) -> None:
    """Write each tool as an executable script into a device's bin folder (host path).

    The script runs Python without `site` (`-S`: no .pth files, no site-packages scan) and finds sftlab where
    this one was imported from: a tool starts in a fraction of the time, as a device's own tools cost the
    lab's host nothing."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    home = str(Path(__file__).resolve().parents[2])
    for name in names:
        script = bin_dir / name
        script.write_text(
            f"#!{python} -S\nimport sys\nsys.path.insert(0, {home!r})\n"
            "from sftlab.tools.programs import main\nsys.exit(main(sys.argv))\n"
        )
        script.chmod(0o755)


def install_shims(bin_dir: Path, *, python: str = sys.executable) -> None:
    """Programs every lab shell has: a `sudo` that explains the lab only offers `sudo su`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    sudo = bin_dir / "sudo"
    sudo.write_text(
        "#!/bin/sh\necho \"sudo: this device only allows 'sudo su' (or 'sudo su -') here\" >&2\nexit 1\n"
    )
    sudo.chmod(sudo.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
