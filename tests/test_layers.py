"""The floor plan holds: no library import hides inside a function to dodge a cycle.

The layer order and the absence of cycles are import-linter's contracts in
pyproject.toml (``nox -s lint`` runs ``lint-imports``); this test keeps the
escape hatch shut that those contracts cannot see past at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "julia"


def _inner_julia_imports(path: Path) -> list[str]:
    """``file:line module`` for every ``julia`` import inside a function of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("julia"):
                found.append(f"{path.name}:{node.lineno} {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("julia")]  # fmt: skip
    return found


def test_no_library_import_inside_a_function() -> None:
    hidden = [hit for p in sorted(LIBRARY.rglob("*.py")) for hit in _inner_julia_imports(p)]
    assert hidden == []


def test_the_check_sees_a_hidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import julia.core\n"
        "def f():\n    from julia.ops import health\n    return health\n"
        "async def g():\n    import julia.fila.queue\n    import json\n"
    )
    assert _inner_julia_imports(probe) == ["probe.py:3 julia.ops", "probe.py:6 julia.fila.queue"]
