"""Real Snakemake reruns: after a config change, the rerun's weights equal a fresh run's.

Each xdist worker runs the old config once (``old_study``) and keeps a copy of
the finished folder. Every test restores that copy to the same path before it
reruns there, so the absolute paths in the manifest stay valid and any saved
state that records where it was written still finds itself where it was made:
the rerun sees exactly the folder a user would have after the old run.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from support.workflow import REPO, executed_rules, snakemake, write_config

CONFIG = REPO / "tests" / "configs" / "rerun.yaml"
DATASET = "FGADR"
MODELS = f"results/models/{DATASET}"
WEIGHTS = {
    "init": f"{MODELS}/init.safetensors",
    "best": f"{MODELS}/base/seed0/best.safetensors",
    "last": f"{MODELS}/base/seed0/last.safetensors",
}
TARGETS = (f"results/cache/{DATASET}", WEIGHTS["init"], WEIGHTS["last"])
ALL_RULES = Counter(("synth", "index", "preprocess", "warmup", "train"))


def load_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def _failure(workdir: Path, result: subprocess.CompletedProcess[str]) -> str:
    """Snakemake's error output and the end of each failed job's log."""
    logs = re.findall(r"^\s+log: (\S+) \(check log file", result.stderr, re.MULTILINE)
    tails = [f"--- {log}:\n{(workdir / log).read_text()[-3000:]}" for log in logs]
    return "\n".join([result.stderr[-3000:], *tails])


def run(
    workdir: Path, config: dict[str, Any], configfile: Path, targets: tuple[str, ...] = TARGETS
) -> Counter[str]:
    """Run ``targets`` of ``config`` in ``workdir``; the jobs it executed, per rule."""
    workdir.mkdir(exist_ok=True)
    result = snakemake(workdir, write_config(configfile, config), "--cores", "1", *targets)
    assert result.returncode == 0, _failure(workdir, result)
    return executed_rules(result)


@dataclass(frozen=True)
class Study:
    """A finished run of the unchanged config, and a copy to restore it from."""

    workdir: Path
    snapshot: Path

    def restore(self) -> Path:
        """Put ``workdir`` back as the old run left it (bytes and mtimes); returns it."""
        shutil.rmtree(self.workdir)
        shutil.copytree(self.snapshot, self.workdir, symlinks=True)
        return self.workdir


@pytest.fixture(scope="session")
def old_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("old")
    workdir, snapshot = root / "study", root / "snapshot"
    assert run(workdir, load_config(), root / "config.yaml") == ALL_RULES
    shutil.copytree(workdir, snapshot, symlinks=True)
    return Study(workdir, snapshot)


@pytest.fixture
def rerun_dir(old_study: Study) -> Path:
    """The old run's folder, as the old run left it."""
    return old_study.restore()


class Match(NamedTuple):
    """Whether a rerun's checkpoint has the same tensors as a fresh run's, and as the old one's."""

    fresh: bool
    old: bool


def same_tensors(a: Path, b: Path) -> bool:
    first, second = load_file(a), load_file(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def matches(rerun: Path, fresh: Path, old: Path) -> dict[str, Match]:
    return {
        name: Match(*(same_tensors(rerun / path, other / path) for other in (fresh, old)))
        for name, path in WEIGHTS.items()
    }


@dataclass(frozen=True)
class Change:
    """One config value changed, the jobs it must rerun and the checkpoints it must change."""

    key: str
    value: Any
    reruns: tuple[str, ...]
    changes: frozenset[str] = frozenset(WEIGHTS)

    def applied(self, config: dict[str, Any]) -> dict[str, Any]:
        changed = copy.deepcopy(config)
        *parents, leaf = self.key.split(".")
        section = changed
        for parent in parents:
            section = section[parent]
        assert section[leaf] != self.value, f"{self.key} already is {self.value!r}"
        section[leaf] = self.value
        return changed

    def expected(self) -> tuple[Counter[str], dict[str, Match]]:
        weights = {name: Match(fresh=True, old=name not in self.changes) for name in WEIGHTS}
        return Counter(self.reruns), weights


CHANGES = [
    pytest.param(
        Change("training.recipes.base.lr", 0.003, ("train",), frozenset({"best", "last"})),
        id="training-lr",
    ),
    pytest.param(Change("model.decoder_channels", [8, 8, 4], ("warmup", "train")), id="decoder"),
    pytest.param(
        Change(f"datasets.{DATASET}.mask_threshold", 128, ("preprocess", "warmup", "train")),
        id="mask-threshold",
    ),
    pytest.param(Change("training.warmup.lr", 0.003, ("warmup", "train")), id="warmup-lr"),
]


@pytest.mark.parametrize("change", CHANGES)
def test_rerun_after_a_change_equals_a_fresh_run(
    old_study: Study, rerun_dir: Path, tmp_path: Path, change: Change
) -> None:
    config = change.applied(load_config())
    reran = run(rerun_dir, config, tmp_path / "changed.yaml")
    fresh = tmp_path / "fresh"
    run(fresh, config, tmp_path / "changed.yaml")
    assert (reran, matches(rerun_dir, fresh, old_study.snapshot)) == change.expected()


def file_states(root: Path) -> dict[str, tuple[int, str]]:
    """(mtime in ns, SHA-256) of every file under ``root`` but Snakemake's own records."""
    states = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and relative.parts[0] != ".snakemake":
            with path.open("rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            states[str(relative)] = (path.stat().st_mtime_ns, digest)
    return states


def test_unchanged_config_runs_no_job_and_changes_no_file(rerun_dir: Path, tmp_path: Path) -> None:
    before = file_states(rerun_dir)
    reran = run(rerun_dir, load_config(), tmp_path / "same.yaml")
    assert (reran, file_states(rerun_dir)) == (Counter(), before)


#: The uncertainty stage's outputs (``core.paths``: METRICS_CI, COMPARISONS, BOOTSTRAP).
UNCERTAINTY = ("results/metrics_ci.csv", "results/comparisons.csv", "results/bootstrap.npz")


def uncertainty_outputs(root: Path) -> dict[str, Any]:
    """The intervals table's text and the replicates' arrays (shape, dtype, bytes: NaN
    included) of a finished run."""
    with np.load(root / UNCERTAINTY[2], allow_pickle=False) as replicates:
        arrays = {
            name: (array.shape, str(array.dtype), array.tobytes())
            for name, array in ((name, replicates[name]) for name in replicates.files)
        }
    return {"intervals": (root / UNCERTAINTY[0]).read_text(), "replicates": arrays}


def test_a_changed_bootstrap_reruns_only_the_uncertainty_stage_and_equals_a_fresh_run(
    rerun_dir: Path, tmp_path: Path
) -> None:
    config = load_config()
    run(rerun_dir, config, tmp_path / "old.yaml", UNCERTAINTY)
    old = uncertainty_outputs(rerun_dir)
    changed = copy.deepcopy(config)
    changed["evaluation"]["bootstrap"] = {"resamples": 40, "seed": 5}
    reran = run(rerun_dir, changed, tmp_path / "changed.yaml", UNCERTAINTY)
    fresh = tmp_path / "fresh"
    run(fresh, changed, tmp_path / "changed.yaml", UNCERTAINTY)
    assert reran == Counter({"uncertainty": 1})
    assert uncertainty_outputs(rerun_dir) == uncertainty_outputs(fresh) != old


def test_staging_caches_reruns_nothing_and_staged_jobs_give_the_same_weights(
    old_study: Study, rerun_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cluster.stage_caches`` is where jobs read their caches, not an input: turning it on
    reruns no job; a forced warm-up and training then read staged copies (expanded from an
    environment variable by the job) and give the old run's weights."""
    monkeypatch.setenv("LESIONSOUP_NODE_SCRATCH", str(tmp_path / "node"))
    config = load_config()
    config["cluster"] = {"stage_caches": "$LESIONSOUP_NODE_SCRATCH/stage"}
    before = file_states(rerun_dir)
    assert run(rerun_dir, config, tmp_path / "staged.yaml") == Counter()
    assert file_states(rerun_dir) == before
    forced = (*TARGETS, "--forcerun", "warmup", "train")
    assert run(rerun_dir, config, tmp_path / "staged.yaml", forced) == Counter(("warmup", "train"))
    logs = [path.read_text() for path in sorted((rerun_dir / "logs").rglob("*.log"))]
    staged = [log for log in logs if f"to {tmp_path / 'node' / 'stage'}/lesionsoup-" in log]
    assert len(staged) == 2  # the warm-up's log and the training's
    assert not any((tmp_path / "node" / "stage").glob("lesionsoup-*/"))
    assert set(matches(rerun_dir, old_study.snapshot, old_study.snapshot).values()) == {
        Match(fresh=True, old=True)
    }
