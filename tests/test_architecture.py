"""The layout shows the data flow: no import cycles, no stage reaching back, light planning."""

from __future__ import annotations

import ast
import subprocess
import sys

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
