"""Step logs are cut back by one truncation on resume and appended to, never rewritten."""

from __future__ import annotations

import pytest

from lesionsoup.training.append_log import AppendLog

HEADER = b"step,loss\n"
ROWS = [b"1,0.5\n", b"2,0.4\n", b"3,0.3\n", b"4,0.2\n"]


def test_resume_keeps_the_rows_up_to_its_step_on_disk_at_once(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(HEADER + b"".join(ROWS) + b"5,0.")  # a torn last line too
    inode = path.stat().st_ino
    log = AppendLog(path, resume_step=2)  # no flush, no close: as if killed right after
    assert path.read_bytes() == HEADER + ROWS[0] + ROWS[1]
    assert path.stat().st_ino == inode and not log.empty
    log.write([{"step": 3, "loss": "0.25"}])
    log.close()
    assert path.read_bytes() == HEADER + ROWS[0] + ROWS[1] + b"3,0.25\r\n"


def test_torn_line_before_the_resumed_step_is_cut_with_everything_after_it(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(HEADER + ROWS[0] + b"2,0.4")
    AppendLog(path, resume_step=3).close()
    assert path.read_bytes() == HEADER + ROWS[0]


def test_fresh_start_empties_the_log_and_writes_the_header_with_the_first_row(tmp_path):
    path = tmp_path / "validation.csv"
    path.write_bytes(HEADER + ROWS[0])
    log = AppendLog(path, resume_step=0)
    assert path.read_bytes() == b"" and log.empty
    log.write([{"step": 4, "score": 0.5, "EX": 0.25}])
    log.close()
    assert path.read_bytes() == b"step,score,EX\r\n4,0.5,0.25\r\n"


def test_a_file_that_is_not_a_step_log_is_named(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"loss,step\n0.5,1\n")
    with pytest.raises(ValueError, match=f"{path}: not a step log"):
        AppendLog(path, resume_step=1)
    assert path.read_bytes() == b"loss,step\n0.5,1\n"
