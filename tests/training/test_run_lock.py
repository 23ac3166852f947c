"""One writer per run folder: a second process stops at once, naming the folder and holder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lesionsoup.training.run_lock import LOCK_NAME, RunFolderBusy, run_lock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from lesionsoup.training.run_lock import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_second_process_stops_naming_the_folder_and_the_holder_until_the_holder_dies(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        message = f"{run} is being written by process {holder.pid} "
        with pytest.raises(RunFolderBusy, match=message), run_lock(run):
            pytest.fail("the lock was taken twice")
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel releases the lock
        holder.wait()
    with run_lock(run):
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def _other_process_locks(run) -> bool:
    code = "import sys\nfrom lesionsoup.training.run_lock import run_lock\n"
    code += "run_lock(sys.argv[1]).__enter__()"
    return (
        subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True).returncode == 0
    )


def test_the_holder_takes_its_lock_again_and_releases_it_with_the_outer_block(tmp_path):
    run = tmp_path / "run"
    with run_lock(run):
        with run_lock(run):
            pass
        assert not _other_process_locks(run)  # still held after the inner block
    assert _other_process_locks(run)
