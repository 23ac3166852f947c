"""envs/lesionsoup.yaml, the environment of every rule: it lists exactly the project's
dependencies (pyproject.toml: dependencies and the tracker extras) with constraints.txt's pins,
and every rule of the workflow declares it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from support import REPO

ENVIRONMENT = REPO / "envs" / "lesionsoup.yaml"
EXTRAS = ("tensorboard", "wandb")  # the trackers a training rule may run


def _requirements(lines: list[str]) -> dict[str, SpecifierSet]:
    parsed = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r.specifier for r in parsed}


def expected(pyproject: str, constraints: str) -> dict[str, SpecifierSet]:
    """The project's requirements, each narrowed by the constraint of the same name."""
    project = tomllib.loads(pyproject)["project"]
    wanted = list(project["dependencies"])
    wanted += [line for extra in EXTRAS for line in project["optional-dependencies"][extra]]
    lines = [line.split("#")[0].strip() for line in constraints.splitlines()]
    pins = _requirements([line for line in lines if line])
    return {
        name: specifier & pins.get(name, SpecifierSet())
        for name, specifier in _requirements(wanted).items()
    }


def environment(text: str) -> tuple[list[str], dict[str, SpecifierSet]]:
    """The conda packages and the pip requirements of an environment file."""
    dependencies = yaml.safe_load(text)["dependencies"]
    conda = [entry for entry in dependencies if isinstance(entry, str)]
    pip = [entry["pip"] for entry in dependencies if isinstance(entry, dict)]
    assert len(pip) == 1, f"{ENVIRONMENT}: one pip section expected"
    return conda, _requirements(pip[0])


def test_environment_lists_the_pinned_dependencies():
    conda, pip = environment(ENVIRONMENT.read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert pip == expected(pyproject, (REPO / "constraints.txt").read_text())
    python = tomllib.loads(pyproject)["project"]["requires-python"]
    assert conda == [f"python{python}", "pip"]


def test_a_change_to_one_file_alone_is_seen():
    pyproject = (REPO / "pyproject.toml").read_text()
    constraints = (REPO / "constraints.txt").read_text()
    _, pip = environment(ENVIRONMENT.read_text())
    assert pip == expected(pyproject, constraints)
    newer = constraints.replace("torchvision==0.28.0", "torchvision==0.29.0")
    assert pip != expected(pyproject, newer)
    assert pip != expected(pyproject.replace('"tqdm>=4.66"', '"tqdm>=4.67"'), constraints)
    assert pip != expected(pyproject.replace('    "pygments>=2.15",\n', ""), constraints)
    assert pip != expected(pyproject, constraints + "pandas==2.2.3\n")


def test_the_pins_reach_the_environment():
    """Hand-read: torch's constraint narrows the pyproject range to the tested release."""
    _, pip = environment(ENVIRONMENT.read_text())
    assert "2.13.0" in pip["torch"] and "2.12.0" not in pip["torch"]
    assert "2.13.0+cpu" not in pip["torch"]
    assert pip["torchvision"] == SpecifierSet("==0.28.0,>=0.19")


def test_the_workflow_is_lint_clean():
    """Snakemake's own linter (every rule with a conda environment, a log, ...) finds nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Lints for" not in output, output
    assert "Congratulations" in output, output


def test_the_rules_name_this_file():
    """common.smk's ENVIRONMENT, relative to the rule files, is envs/lesionsoup.yaml."""
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    declared = re.search(r'^ENVIRONMENT = "(.+)"$', common, flags=re.M)
    assert declared and (REPO / "workflow" / "rules" / declared[1]).resolve() == ENVIRONMENT
