"""`./run bench renewal` refuses a folder an earlier run left, before it starts a lab or a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import renewal


def test_a_dir_holding_an_earlier_runs_files_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lab").mkdir()  # what a run leaves
    with pytest.raises(SystemExit) as ended:
        renewal.main(["--ftds", "2", "--dir", str(tmp_path)])
    assert ended.value.code == 2
    error = capsys.readouterr().err
    assert f"--dir {tmp_path} holds files already" in error
    assert "give a new or empty folder" in error
    assert [p.name for p in tmp_path.iterdir()] == ["lab"]  # nothing started, nothing written
