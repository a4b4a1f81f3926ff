"""The test suite's own rules, read from its sources with ``ast``: fixtures are shared through
conftest.py, never imported from another test module; a module that needs torch skips without
it (``pytest.importorskip``) instead of failing to import, so the torch-free tests still run in a
runtime-only install."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imports_from_test_modules(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found += [n for n in names if n.split(".")[-1].startswith("test_") or n.startswith("tests.test_")]
    return found


def torch_before_skip(tree: ast.Module) -> list[int]:
    """Lines of module-level torch imports that come before ``pytest.importorskip("torch")``."""
    wrong, skipped = [], False
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.Expr)):
            call = node.value
            if (isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "importorskip"
                    and call.args and getattr(call.args[0], "value", None) == "torch"):
                skipped = True
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if not skipped and any(n == "torch" or n.startswith("torch.") for n in names):
            wrong.append(node.lineno)
    return wrong


def test_no_test_module_imports_another_test_module():
    wrong = {p.name: found for p in sorted(TESTS.glob("*.py"))
             if (found := _imports_from_test_modules(ast.parse(p.read_text(encoding="utf-8"))))}
    assert not wrong, f"share fixtures through conftest.py and helpers through *_helpers.py: {wrong}"


def test_modules_that_need_torch_skip_without_it():
    wrong = {p.name: lines for p in sorted(TESTS.glob("*.py"))
             if (lines := torch_before_skip(ast.parse(p.read_text(encoding="utf-8"))))}
    assert not wrong, f'module-level torch imports before torch = pytest.importorskip("torch"): {wrong}'


def test_the_torch_rule_catches_a_top_level_import_and_accepts_the_skip():
    assert torch_before_skip(ast.parse("import numpy\nimport torch\n")) == [2]
    assert torch_before_skip(ast.parse("from torch import nn\n")) == [1]
    assert torch_before_skip(ast.parse(
        'import pytest\n\ntorch = pytest.importorskip("torch")\n\nfrom torch import nn\n')) == []
    assert torch_before_skip(ast.parse("def f():\n    import torch\n")) == []  # inside a test: fine
    assert _imports_from_test_modules(ast.parse("from test_train import tiny_cfg\n")) == ["test_train"]
    assert _imports_from_test_modules(ast.parse("from train_helpers import tiny_cfg\n")) == []
