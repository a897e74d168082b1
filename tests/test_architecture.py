"""The layout rules of docs/ARCHITECTURE.md, checked: import layers (import-linter), one meaning per module name,
modules a reader can hold in their head."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "maskseg_d2"
MAX_LINES = 450  # beyond this a module must say in its docstring which one cohesive algorithm or class it is


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_import_layers_hold():
    """`lint-imports` checks the [tool.importlinter] contracts in pyproject.toml (also imports inside functions)."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in out.stdout


def test_no_two_modules_share_a_name():
    names = Counter(p.name for p in _modules() if p.name != "__init__.py")
    assert [n for n, k in names.items() if k > 1] == []


def test_long_modules_say_why():
    long = {}
    for path in _modules():
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            if "one cohesive" not in doc.lower():
                long[str(path.relative_to(ROOT))] = lines
    assert long == {}, f"split these or say in the docstring which one cohesive algorithm/class they are: {long}"
