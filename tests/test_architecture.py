"""The layout shows the data flow: no import cycles, no stage reaching back, light planning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lesionsoup

SRC = Path(lesionsoup.__file__).parent
#: Modules outside the stage packages belong to the command line, the last stage.
ENTRY_POINTS = {"lesionsoup", "lesionsoup.cli", "lesionsoup.__main__"}


def module_name(path: Path) -> str:
    parts = ("lesionsoup", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The lesionsoup modules ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in SRC.rglob("*.py")}
    modules = set(paths)
    return {name: imported_modules(path, modules) - {name} for name, path in paths.items()}


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
