"""The structure the code must keep (docs/architecture.md): layers point down (patchenv <-
agents <- benchmarks), no import circle between modules, no source file over 450 lines.
Read from the source with `ast`, so a lazy import inside a function counts too."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("patchenv", "agents", "benchmarks")
LAYER = {"patchenv": 0, "agents": 1, "benchmarks": 2}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports: ``from a.b import c`` counts as a.b.c when that
    is a module (a submodule import), else as a.b."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package upwards
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != me}


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports(path, modules) for name, path in modules.items()}


def test_layers_point_down():
    upward = [(a, b) for a, targets in graph().items() for b in targets
              if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]]
    assert upward == []


def test_no_import_circle():
    g = graph()
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(g[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The two checks above can fail: a file that imports upwards and a pair that import
    each other are found."""
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        (tmp_path / "patchenv").mkdir()
        (tmp_path / "agents").mkdir()
        a, b, x = tmp_path / "patchenv" / "a.py", tmp_path / "patchenv" / "b.py", tmp_path / "agents" / "x.py"
        a.write_text("from patchenv import b\nimport agents.x\n")
        b.write_text("from patchenv.a import thing\n")
        x.write_text("")
        modules = {module_name(p): p for p in (a, b, x)}
        assert imports(a, modules) == {"patchenv.b", "agents.x"} and imports(b, modules) == {"patchenv.a"}
    finally:
        ROOT = saved


@pytest.mark.parametrize("package", PACKAGES)
def test_no_source_file_over_450_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importing_every_patchenv_module_loads_no_agent_or_benchmark():
    code = ("import importlib, pkgutil, sys, patchenv\n"
            "for m in pkgutil.walk_packages(patchenv.__path__, 'patchenv.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)  # __main__ runs the CLI\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('agents', 'benchmarks')))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
