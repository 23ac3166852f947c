"""The layout shows the data flow: no import cycles, no stage reaching back, light planning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support.architecture import SRC, import_graph, module_name

import lesionsoup

#: Modules outside the stage packages belong to the command line, the last stage.
ENTRY_POINTS = {"lesionsoup", "lesionsoup.cli", "lesionsoup.__main__"}


def stage_of(module: str) -> str:
    return "commands" if module in ENTRY_POINTS else module.split(".")[1]


def test_every_package_is_a_stage_in_the_documented_order():
    packages = {path.parent.name for path in SRC.glob("*/__init__.py")}
    assert packages == set(lesionsoup.STAGES)


def test_no_stage_imports_a_later_one():
    order = {stage: index for index, stage in enumerate(lesionsoup.STAGES)}
    backwards = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target != "lesionsoup" and order[stage_of(target)] > order[stage_of(module)]
    )
    assert backwards == []


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for target in graph[node]:
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_cycles():
    graph = import_graph()
    graph = {name: {t for t in targets if t != "lesionsoup"} for name, targets in graph.items()}
    cycles = [cycle for name in sorted(graph) if (cycle := _cycle_from(name, graph))]
    assert cycles == []


def test_planning_imports_neither_torch_nor_optuna():
    """The Snakefile imports ``lesionsoup.plan``; ``snakemake -n`` must stay fast."""
    code = (
        "import sys, pkgutil, importlib, lesionsoup.plan as plan\n"
        "for info in pkgutil.iter_modules(plan.__path__):\n"
        "    importlib.import_module(f'lesionsoup.plan.{info.name}')\n"
        "print(sorted(m for m in ('torch', 'optuna', 'pandas') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


#: The longest function the code base allows, in lines (signature and docstring included).
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_the_limit():
    offenders = sorted(
        f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for path in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    )
    assert offenders == []


#: The stages that may import the planner besides itself: the command line (the Snakefile,
#: ``workflow/`` and ``benchmarks/`` do too, outside the package).
PLAN_IMPORTERS = {"plan", "commands"}


def plan_importers(graph: dict[str, set[str]]) -> list[str]:
    """``module -> plan module`` for every import of ``lesionsoup.plan`` by a module outside
    ``PLAN_IMPORTERS``."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if stage_of(module) not in PLAN_IMPORTERS
        for target in targets
        if target != "lesionsoup" and stage_of(target) == "plan"
    )


def test_only_the_command_line_imports_the_planner():
    """``plan`` is the workflow's planner; the names the runtime needs are ``core``'s."""
    assert plan_importers(import_graph()) == []


def test_the_planner_check_finds_a_runtime_import():
    graph = {"lesionsoup.report.tables": {"lesionsoup.plan.evaluation", "lesionsoup.core.methods"}}
    graph["lesionsoup.commands.merging"] = {"lesionsoup.plan.options"}
    assert plan_importers(graph) == ["lesionsoup.report.tables -> lesionsoup.plan.evaluation"]


REPO = SRC.parents[1]
#: The one module each list of names is written in; every other place reads it from there.
NAME_HOMES = {SRC / "core" / "merge_rules.py", SRC / "core" / "methods.py"}


def name_lists() -> dict[str, frozenset[str]]:
    """Each list of names that has one home: methods (rules and their part soups among them),
    ingredient pools, BatchNorm policies and parts."""
    from lesionsoup.core.merge_rules import BN_POLICIES, PARTS, POOLS
    from lesionsoup.core.methods import METHOD_ORDER

    return {
        "methods": frozenset(METHOD_ORDER),
        "pools": frozenset(POOLS),
        "BatchNorm policies": frozenset(BN_POLICIES),
        "parts": frozenset(PARTS),
    }


def spelled_name_lists(source: str, where: str) -> list[str]:
    """``where:line: kind`` of each tuple, list or set literal in ``source`` that spells two or
    more names of one of ``name_lists`` (and no other string)."""
    lists, found = name_lists(), []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Tuple | ast.List | ast.Set):
            continue
        spelled = [
            element.value
            for element in node.elts
            if isinstance(element, ast.Constant) and isinstance(element.value, str)
        ]
        kinds = [kind for kind, names in lists.items() if set(spelled) <= names]
        if len(spelled) >= 2 and kinds:
            found.append(f"{where}:{node.lineno}: {kinds[0]}")
    return found


def python_files() -> list[Path]:
    """The package, the workflow's scripts and the benchmarks: the code that may name them."""
    folders = (SRC, REPO / "workflow", REPO / "benchmarks")
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def test_each_name_list_is_spelled_in_one_place():
    """A list of methods, pools, merge rules, BatchNorm policies or parts is written in its
    home (``NAME_HOMES``) only; a second copy would drift from it."""
    copies = [
        found
        for path in python_files()
        if path not in NAME_HOMES
        for found in spelled_name_lists(path.read_text(), str(path.relative_to(REPO)))
    ]
    assert copies == []


def test_the_name_list_check_finds_a_second_copy():
    planted = (
        'ORDER = ("single", "ensemble", SWA)\nif pool in ("grid", "fgg"):\n    x = ["a", "b"]\n'
    )
    assert spelled_name_lists(planted, "x.py") == ["x.py:1: methods", "x.py:2: pools"]
    assert spelled_name_lists('POLICY = "average"\nTRIES = ("average",)\n', "x.py") == []
