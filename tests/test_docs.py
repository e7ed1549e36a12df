"""The docs name tests as evidence; every named test file and test function must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")
_DOCS = sorted((ROOT / "docs").glob("*.md"))


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def _references(doc: Path) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in _REFERENCE.finditer(doc.read_text("utf-8"))]


def test_the_threat_model_names_tests_for_its_defences() -> None:
    assert len(_references(ROOT / "docs" / "threat-model.md")) >= 30


@pytest.mark.parametrize("doc", _DOCS, ids=lambda p: p.name)
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    stale = []
    for file, function in _references(doc):
        path = ROOT / file
        if not path.is_file():
            stale.append(file)
        elif function is not None and function not in _test_names(path):
            stale.append(f"{file}::{function}")
    assert not stale, f"{doc.name} names tests that do not exist: {stale}"
