"""Packaging: light imports, every subpackage listed, CLI entry point."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["edgeseg", "edgeseg.runtime", "edgeseg.metadata", "edgeseg.metrics"])
def test_light_modules_do_not_import_torch(module):
    code = f"import sys, {module}; heavy = [m for m in ('torch', 'onnx', 'openvino', 'tensorflow', 'coremltools', 'litert_torch') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, f"import {module} pulled in {proc.stdout} {proc.stderr}"


def test_every_subpackage_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"


def test_mapped_folders_import_only_under_edgeseg():
    # `import runtime` must not work from outside the checkout: the folder is edgeseg.runtime.
    proc = subprocess.run([sys.executable, "-c", "import runtime"], capture_output=True, cwd="/")
    assert proc.returncode != 0


def test_cli_version():
    from edgeseg import __version__

    proc = subprocess.run([sys.executable, "-m", "edgeseg", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"edgeseg {__version__}"


def test_cli_models_lists_counts():
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg", "models", "--size", "64x64", "--name", "lraspp_mobilenetv3_small"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lraspp_mobilenetv3_small" in proc.stdout


def test_cli_unknown_model_is_a_clear_error():
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg", "models", "--name", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown model 'nope'" in proc.stderr and "Known models" in proc.stderr
