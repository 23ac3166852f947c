"""The `lesionsoup` command: help on every subcommand and option, its version, errors that
name the file."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

import pytest
from support.native_trees import IDRID_MASKS, idrid_tree

from lesionsoup.cli import build_parser, main
from lesionsoup.commands import MODULES
from lesionsoup.data.manifest import read_manifest

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def test_expected_stages_are_commands():
    assert {"synth", "index", "preprocess", "warmup", "train"} <= set(SUBCOMMANDS)


def test_modules_names_the_module_of_every_subcommand():
    assert sorted(MODULES) == SUBCOMMANDS
    for command, module in MODULES.items():
        alone = build_parser(command)._subparsers._group_actions[0].choices
        assert sorted(alone) == sorted(name for name, of in MODULES.items() if of == module)


def test_a_command_imports_its_own_module_only():
    code = (
        "import sys; from lesionsoup.cli import main\n"
        "try: main(['preprocess', '--help'])\n"
        "except SystemExit: print(*sorted(sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "usage: lesionsoup preprocess" in result.stdout
    imported = result.stderr.split()
    commands = [name for name in imported if name.startswith("lesionsoup.commands.")]
    assert commands == ["lesionsoup.commands.arguments", "lesionsoup.commands.data"]
    assert not {"torch", "scipy", "matplotlib", "optuna"} & set(imported)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: lesionsoup " + name in capsys.readouterr().out


def _options_without_help(
    parser: argparse.ArgumentParser, command: str
) -> Iterator[tuple[str, str]]:
    """(command, option) for every argument of ``parser`` and its subcommands with no help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, subparser in action.choices.items():
                if name not in helped:
                    yield command, name
                yield from _options_without_help(subparser, f"{command} {name}")
        elif not action.help or action.help == argparse.SUPPRESS:
            yield command, "/".join(action.option_strings) or action.dest


def test_every_option_of_every_command_has_help():
    assert list(_options_without_help(build_parser(), "lesionsoup")) == []


def test_the_walk_finds_an_option_without_help():
    parser = build_parser()
    quiet = parser._subparsers._group_actions[0].choices["train"]
    quiet.add_argument("--undocumented")
    assert ("lesionsoup train", "--undocumented") in _options_without_help(parser, "lesionsoup")


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lesionsoup {version('lesionsoup')}"


def test_missing_dataset_root_is_named(tmp_path, caplog):
    root = tmp_path / "no-such-idrid"
    assert main(["index", "IDRID", str(root), "-o", str(tmp_path / "m.csv")]) == 1
    assert str(root) in caplog.text
    assert not (tmp_path / "m.csv").exists()


def test_bad_json_option_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "IDRID", str(tmp_path), "-o", "m.csv", "--options", "{not json"])
    assert exit_info.value.code == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_index_takes_names_in_any_case_and_unrecognised_as_errors(tmp_path, caplog):
    root = idrid_tree(tmp_path / "idrid", {"train": {"I1": ("MA",)}, "test": {"I2": ("MA",)}})
    manifest = tmp_path / "m.csv"
    assert main(["index", "idrid", str(root), "-o", str(manifest)]) == 0
    assert set(read_manifest(manifest)["dataset"]) == {"IDRID"}
    extra = root / IDRID_MASKS / "a. Training Set" / "6. Vessels"
    extra.mkdir()
    assert main(["index", "Idrid", str(root), "-o", str(manifest)]) == 0
    assert str(extra) in caplog.text
    manifest.unlink()
    assert main(["index", "IDRID", str(root), "-o", str(manifest), "--unrecognised", "error"]) == 1
    assert not manifest.exists()


def test_unknown_dataset_is_named(tmp_path, caplog):
    assert main(["index", "eyepacs", str(tmp_path), "-o", str(tmp_path / "m.csv")]) == 1
    assert "unknown dataset 'eyepacs'" in caplog.text


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "lesionsoup", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "preprocess" in result.stdout
