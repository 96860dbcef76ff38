"""The house rule: commands sit on top of the library, and nothing in the library imports them.

The command layer is ``gatekeeper.cli``, ``gatekeeper.commands`` and ``gatekeeper.demo``. Every
other module of the package (the stages, the app, the journal, the hooks, the web view, the
report, the training package) is library. The training package's ``train``/``evaluate`` modules
hold the training extra's own entry points (argument parsers, ``main``); those may stay there, but
they too import nothing of the command layer (logging comes from ``gatekeeper.logs``).

Two checks, since an import inside a function only happens when that function runs: each library
module imported alone, in a fresh interpreter, loads no command module; and no library source
names a command module in any import, at the top or inside a function.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gatekeeper"
COMMANDS = {"gatekeeper.cli", "gatekeeper.commands", "gatekeeper.demo"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


LIBRARY = sorted(
    module_name(p)
    for p in PACKAGE.rglob("*.py")
    if module_name(p) not in COMMANDS and p.name != "__main__.py"
)

#: Library modules that import TensorFlow/Keras when loaded: the fresh-interpreter check imports
#: them only where the training extra is installed (the source check covers them everywhere).
NEEDS_KERAS = {"gatekeeper.training.models"}


def test_the_library_list_covers_the_stages() -> None:
    for stage in ("capture", "detect", "crop", "classify", "gate", "journal", "hooks", "hooks.dispatch", "web", "report", "app", "logs"):
        assert f"gatekeeper.{stage}" in LIBRARY
    for part in ("data", "metrics", "evaluate", "train", "models", "export"):
        assert f"gatekeeper.training.{part}" in LIBRARY


def imported_names(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # from . import cli
    return names


@pytest.mark.parametrize("module", LIBRARY)
def test_no_library_source_imports_a_command(module: str) -> None:
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert not imported_names(path) & COMMANDS, f"{module} imports {sorted(imported_names(path) & COMMANDS)}"


@pytest.mark.slow
def test_importing_each_library_module_loads_no_command() -> None:
    # One fresh interpreter per module, all in one child process run (each import alone).
    code = (
        "import importlib, json, subprocess, sys\n"
        "result = {}\n"
        "for m in sys.argv[1:]:\n"
        "    out = subprocess.run([sys.executable, '-c', 'import importlib, json, sys; importlib.import_module(sys.argv[1]); "
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith(\"gatekeeper.\"))))', m], capture_output=True, text=True)\n"
        "    result[m] = json.loads(out.stdout) if out.returncode == 0 else 'failed: ' + out.stderr[-500:]\n"
        "print(json.dumps(result))\n"
    )
    modules = [m for m in LIBRARY if m not in NEEDS_KERAS or importlib.util.find_spec("keras") is not None]
    proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=600, cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout)
    failed = {m: v for m, v in loaded.items() if isinstance(v, str)}
    assert not failed, failed
    offenders = {m: sorted(set(v) & COMMANDS) for m, v in loaded.items() if set(v) & COMMANDS}
    assert not offenders, f"library modules that load the command layer: {offenders}"


def test_the_demo_runs_the_gate_without_the_command_line() -> None:
    # gatekeeper demo runs the gate through the library (gatekeeper.serve), as the command line
    # does: no circle through cli (cli -> commands -> demo -> cli).
    demo = PACKAGE / "demo.py"
    assert "gatekeeper.cli" not in imported_names(demo)
    assert "gatekeeper.serve.serve" in imported_names(demo)
