"""The package's floors: a module imports only from its own floor or the floors below it, and no
edgeseg modules import each other in a cycle.

Every import counts, the ones inside functions too (a function-level import hides a cycle from
Python but not from the design). Read from the source with ``ast``; nothing is imported, so this
runs in a fraction of a second and without torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where each part of the installed package lives in the checkout (pyproject's package-dir).
PACKAGE_DIRS = {
    "edgeseg": ROOT / "edgeseg",
    "edgeseg.converters": ROOT / "converters",
    "edgeseg.quantization": ROOT / "quantization",
    "edgeseg.runtime": ROOT / "runtime",
}

# Floors, bottom first. "name" is that one module; "name.*" is a package with all its modules.
# The most specific entry places a module.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Errors, metadata, files and the small helpers everything uses.
    ("foundation", (
        "edgeseg", "edgeseg.errors", "edgeseg.fileio", "edgeseg.integrity", "edgeseg.metadata",
        "edgeseg.metrics", "edgeseg.pngio", "edgeseg.quiet", "edgeseg.losses", "edgeseg.weights",
    )),
    # Runs a converted file with numpy and one inference library (no torch).
    ("runtime", ("edgeseg.runtime.*",)),
    ("data, demo", ("edgeseg.data.*", "edgeseg.demo.*")),
    ("models", ("edgeseg.models.*",)),
    # A checkpoint is rebuilt through the model zoo; the PyTorch reference backend runs one
    # (the runtime's loader names it by string only, so the runtime stays below the models).
    ("checkpoint", ("edgeseg.checkpoint", "edgeseg.runtime.torch_ref")),
    ("validate", ("edgeseg.validate.*",)),
    ("train", ("edgeseg.train.*",)),
    # Conversion checks a file with validate's gates; QAT trains with the training loop.
    ("converters, quantization", ("edgeseg.converters.*", "edgeseg.quantization.*")),
    ("cli", ("edgeseg.cli.*", "edgeseg.__main__")),
)

# Top-level names the package must never import: scripts and tests live outside it, and the
# converters/quantization/runtime folders are importable only as edgeseg.*.
FORBIDDEN_TOP_LEVEL = {"examples", "benchmarks", "tests", "converters", "quantization", "runtime"}


def package_modules() -> dict[str, Path]:
    """Every module of the installed package -> its source file in the checkout."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imported_modules(name: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """What module ``name`` (its ``source``) imports anywhere in its body, function bodies
    included. ``from X import y`` counts as ``X.y`` where that is a module in ``known``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                sub = f"{origin}.{alias.name}"
                found.add(sub if sub in known else origin)
    return found


def import_graph() -> dict[str, set[str]]:
    """edgeseg module -> every module it imports (edgeseg's or not)."""
    modules = package_modules()
    known = set(modules)
    return {
        name: imported_modules(name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py")
        for name, path in modules.items()
    }


def floor_of(module: str, layers=LAYERS) -> int | None:
    """The index of ``module``'s floor in ``layers`` (the most specific entry wins), or None."""
    best, best_length = None, -1
    for index, (_, entries) in enumerate(layers):
        for entry in entries:
            package = entry.removesuffix(".*")
            matches = module == package or (entry.endswith(".*") and module.startswith(package + "."))
            if matches and len(package) > best_length:
                best, best_length = index, len(package)
    return best


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Each import from a lower floor to a higher one, as 'module (floor) -> module (floor)'."""
    found = []
    for module, targets in sorted(graph.items()):
        low = floor_of(module, layers)
        for target in sorted(targets):
            high = floor_of(target, layers) if target in graph else None
            if low is not None and high is not None and high > low:
                found.append(f"{module} ({layers[low][0]}) -> {target} ({layers[high][0]})")
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a cycle (strongly connected components of
    more than one module), among the modules that are keys of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the package is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in graph or target == node:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_has_a_floor(graph):
    unplaced = sorted(m for m in graph if floor_of(m) is None)
    assert not unplaced, f"modules on no floor (add them to LAYERS in {Path(__file__).name}): {unplaced}"


def test_no_module_imports_from_a_higher_floor(graph):
    assert upward_imports(graph) == []


def test_no_import_cycles_among_edgeseg_modules(graph):
    assert import_cycles(graph) == []


def test_the_package_imports_no_script_test_or_bare_folder(graph):
    wrong = sorted(
        f"{module} -> {target}" for module, targets in graph.items() for target in targets
        if target.split(".")[0] in FORBIDDEN_TOP_LEVEL
    )
    assert not wrong
    # Nor loads one by path.
    by_path = sorted(m for m, p in package_modules().items() if "spec_from_file_location" in p.read_text(encoding="utf-8"))
    assert not by_path


def test_the_checks_catch_a_function_level_upward_import_and_a_cycle():
    # The import that issue 13 removed: the training config parsed sizes with the CLI's parser,
    # inside a function.
    source = "import os\n\ndef size(text):\n    from edgeseg.cli.options import parse_size\n    return parse_size(text)\n"
    known = {"edgeseg.train.config", "edgeseg.cli.options", "edgeseg.metadata"}
    targets = imported_modules("edgeseg.train.config", source, known)
    assert targets == {"os", "edgeseg.cli.options"}
    graph = {"edgeseg.train.config": targets, "edgeseg.cli.options": {"edgeseg.metadata"}, "edgeseg.metadata": set()}
    assert upward_imports(graph) == ["edgeseg.train.config (train) -> edgeseg.cli.options (cli)"]
    # Moved down, the same code is fine.
    graph["edgeseg.train.config"] = {"os", "edgeseg.metadata"}
    assert upward_imports(graph) == [] and import_cycles(graph) == []
    # A cycle on one floor is no upward import, but is found as a cycle (models <-> checkpoint
    # before edgeseg.weights; here a registry that imports its package back).
    cyclic = {
        "edgeseg.models": {"edgeseg.models.registry", "edgeseg.models.segformer"},
        "edgeseg.models.registry": {"edgeseg.models"},
        "edgeseg.models.segformer": {"edgeseg.models.registry"},
        "edgeseg.metadata": set(),
    }
    assert upward_imports(cyclic) == []
    assert import_cycles(cyclic) == [["edgeseg.models", "edgeseg.models.registry", "edgeseg.models.segformer"]]
    # Relative imports resolve against the module's package.
    relative = imported_modules("edgeseg.runtime.loader", "from .errors import X\nfrom . import session\n",
                                {"edgeseg.runtime.errors", "edgeseg.runtime.session"})
    assert relative == {"edgeseg.runtime.errors", "edgeseg.runtime.session"}


def test_a_new_module_is_placed_by_the_most_specific_entry():
    assert LAYERS[floor_of("edgeseg.runtime.torch_ref")][0] == "checkpoint"
    assert LAYERS[floor_of("edgeseg.runtime.loader")][0] == "runtime"
    assert LAYERS[floor_of("edgeseg")][0] == "foundation"
    assert floor_of("edgeseg.somewhere_new") is None  # "edgeseg" is the package's __init__ only
