"""The layout rule, read from the code: the app (demo/, app.py) and training (train/) both stand on model/ and
never import each other, and model/ imports neither side. Imports are parsed (ast), not run, and include those
inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"demo": {"train"}, "model": {"demo", "train"}}


def imported_packages(source: str, package: str) -> dict[str, int]:
    """Top-level package of every import in a module of `package` -> the first line that imports it."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package if node.level else node.module or ""]  # `from . import x` stays in its package
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


def modules(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    return files + [ROOT / "app.py"] if package == "demo" else files  # app.py is the app's entry point


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_goes_back_against_the_flow(package):
    files = modules(package)
    assert len(files) > 3, f"no modules found in {package}/"
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in files
             for name, line in imported_packages(path.read_text(), package).items() if name in FORBIDDEN[package]]
    assert not wrong, "the layout is train -> model files -> demo, never back:\n" + "\n".join(wrong)


def test_the_parser_sees_lazy_and_relative_imports():
    source = "import os.path\n\ndef f():\n    from train.images import read_face\n\nfrom . import render\n"
    assert imported_packages(source, "demo") == {"os": 1, "train": 4, "demo": 6}
