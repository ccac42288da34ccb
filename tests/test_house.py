"""The house rule: every layer imports only layers below it, at the top of its files.

The layers, bottom first (docs/ARCHITECTURE.md draws them):

    nas.spec < search_spaces < nas.models < nas.runtime < controllers < latency
             < nas.training < netadapt < nas.campaign < nas.cli

A module may import its own layer and any layer below. Imports of our own modules sit at the top
of the file; a function-local import is allowed only for an optional or heavy third-party package,
and then it carries a comment saying why it is deferred.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("nas.spec", "search_spaces", "nas.models", "nas.runtime", "controllers", "latency",
          "nas.training", "netadapt", "nas.campaign", "nas.cli")
PACKAGES = ("nas", "search_spaces", "latency", "controllers", "netadapt")
HEAVY = {"mindspore", "mindcv", "ray", "optuna", "optuna_dashboard", "matplotlib", "plotly", "scipy",
         "sklearn", "pandas", "PIL", "onnx", "onnxruntime", "psycopg2", "sqlalchemy"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module, resolved to a submodule where one is named
    line: int
    local: bool  # inside a function body
    commented: bool  # a comment on the line or the line above


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def all_modules() -> set[str]:
    return {module_name(path) for path in source_files()}


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, known: set[str]) -> list[Import]:
    module = module_name(path)
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    local_nodes = {id(child) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for child in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, path.name == "__init__.py", node)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        first = node.lineno - 1  # a comment may head a run of deferred imports
        while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
            first -= 1
        commented = any("#" in text for text in lines[max(first - 1, 0): node.end_lineno or node.lineno])
        found += [Import(module, target, node.lineno, id(node) in local_nodes, commented) for target in targets]
    return found


def layer_of(module: str) -> int | None:
    best = None
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            best = rank
    if module == "nas":
        return 0  # the package face re-exports nas.spec and sits with it
    return best


def own(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    known = all_modules()
    return [item for path in source_files() for item in imports_of(path, known)]


def test_every_module_belongs_to_a_layer() -> None:
    loose = sorted(module for module in all_modules() if module != "nas" and layer_of(module) is None)
    assert loose == [], f"modules outside every layer: {loose}"


def test_no_layer_imports_a_layer_above_it(graph: list[Import]) -> None:
    upward = [f"{item.module}:{item.line} imports {item.target}" for item in graph if own(item.target)
              and (layer_of(item.target) or 0) > (layer_of(item.module) or 0)]
    assert upward == []


def test_the_nas_package_face_imports_only_the_spec(graph: list[Import]) -> None:
    assert {item.target for item in graph if item.module == "nas" and own(item.target)} == {"nas.spec"}


def test_own_modules_are_imported_at_the_top(graph: list[Import]) -> None:
    local = [f"{item.module}:{item.line} imports {item.target}" for item in graph if item.local and own(item.target)]
    assert local == []


def test_deferred_third_party_imports_are_heavy_and_say_why(graph: list[Import]) -> None:
    deferred = [item for item in graph if item.local and not own(item.target)]
    light = [f"{item.module}:{item.line} {item.target}" for item in deferred if item.target.split(".")[0] not in HEAVY]
    silent = [f"{item.module}:{item.line} {item.target}" for item in deferred if not item.commented]
    assert light == [], "a light import belongs at the top of the file"
    assert silent == [], "a deferred import needs a comment saying why"


def test_no_module_import_cycles(graph: list[Import]) -> None:
    known = all_modules()
    edges: dict[str, set[str]] = {module: set() for module in known}
    for item in graph:
        target = item.target
        while target and target not in known:  # `import a.b.c` of a name inside a module
            target = target.rpartition(".")[0]
        if target and target != item.module and not item.local:
            edges[item.module].add(target)
    for package in known:  # a package's face is fine to import from its own modules
        for module in edges:
            if module.startswith(package + ".") and package in edges[module]:
                edges[module].discard(package)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [module, target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_package_level_cycles(graph: list[Import]) -> None:
    def unit(module: str) -> str:
        rank = layer_of(module)
        return LAYERS[rank] if rank is not None else module

    pairs = {(unit(item.module), unit(item.target)) for item in graph if own(item.target)}
    mutual = sorted(f"{a} <-> {b}" for a, b in pairs if a < b and (b, a) in pairs)
    assert mutual == []


def test_reading_a_spec_does_not_load_mindspore() -> None:
    script = ("import sys; import nas.cli.main, nas.cli.spec, nas.spec.profile, search_spaces.references;"
              "nas.spec.profile.profile(search_spaces.references.get('mobilenet_v3_large'), 224);"
              "print(sorted(m for m in ('mindspore', 'ray', 'optuna', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
