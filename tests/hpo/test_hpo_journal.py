"""The HPO journal survives torn writes: a killed writer's or a full disk's."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import optuna
import pytest
from test_hpo import journal_study, quick_objective

from lesionsoup.hpo import journal as hpo_journal
from lesionsoup.hpo import trials as hpo


def _plain_study(path: Path) -> optuna.Study:
    """The study as plain Optuna reads it (another program, or an older lesionsoup)."""
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(backend))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _tear(path: Path) -> bytes:
    """Append the first half of a copy of the journal's last record, as a killed writer would."""
    torn = path.read_bytes().splitlines()[-1]
    torn = torn[: len(torn) // 2]
    with open(path, "ab") as handle:
        handle.write(torn)
    return torn


def test_plain_optuna_cannot_read_a_journal_written_after_a_torn_record(tmp_path):
    """The failure repaired below: a record appended onto the torn one breaks every reader."""
    journal = tmp_path / "journal.log"
    hpo.run_trial(journal_study(journal), 0, quick_objective)
    record = _records(journal)[-1]
    _tear(journal)
    plain = optuna.storages.journal.JournalFileBackend(str(journal))
    plain.append_logs([record])  # lands on the torn line
    plain.append_logs([record])
    with pytest.raises(json.JSONDecodeError):
        list(plain.read_logs(0))


def test_torn_last_record_is_set_aside_and_later_trials_run(tmp_path, caplog):
    journal = tmp_path / "journal.log"
    first = hpo.run_trial(journal_study(journal), 0, quick_objective)
    complete = journal.read_bytes()
    torn = _tear(journal)
    later = [hpo.run_trial(journal_study(journal, job), job, quick_objective) for job in (1, 2)]
    (aside,) = tmp_path.glob("journal.log.torn-*")
    assert aside.read_bytes() == torn and str(aside) in caplog.text
    assert journal.read_bytes().startswith(complete)  # every complete record kept, in place
    trials = {t.number: t for t in _plain_study(journal).trials}  # plain Optuna reads it too
    assert trials[first.number].value == first.value and first.state.name == "COMPLETE"
    assert [trials[t.number].state.name for t in later] == ["COMPLETE", "COMPLETE"]
    assert len(trials) == 3


def test_full_disk_during_a_write_leaves_the_journal_as_it_was(tmp_path, monkeypatch):
    journal = tmp_path / "journal.log"
    first = hpo.run_trial(journal_study(journal), 0, quick_objective)
    real_write = hpo_journal.write_records

    def half_then_full(path: Path, data: bytes) -> None:
        with open(path, "ab") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    study = journal_study(journal, 1)
    before = journal.read_bytes()
    monkeypatch.setattr(hpo_journal, "write_records", half_then_full)
    with pytest.raises(hpo_journal.JournalDamaged, match=f"{journal}.*No space left"):
        hpo.run_trial(study, 1, quick_objective)
    assert journal.read_bytes() == before
    monkeypatch.setattr(hpo_journal, "write_records", real_write)
    later = hpo.run_trial(journal_study(journal, 1), 1, quick_objective)
    trials = {t.number: t for t in _plain_study(journal).trials}
    assert trials[first.number].value == first.value
    assert trials[later.number].state.name == "COMPLETE" and len(trials) == 2
    assert not list(tmp_path.glob("journal.log.torn-*"))  # nothing was torn
    assert all("op_code" in record for record in _records(journal))


def test_damaged_record_before_the_last_is_named_with_its_line(tmp_path):
    journal = tmp_path / "journal.log"
    hpo.run_trial(journal_study(journal), 0, quick_objective)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:10] + lines[3]  # a torn record with the next one written onto it
    journal.write_bytes(b"".join(lines))
    with pytest.raises(hpo_journal.JournalDamaged, match=f"{journal}: line 3 .*delete that line"):
        journal_study(journal)
