"""The package's shape, checked from the source: layers in order, no cycles, no private imports.

Reads every module of ``trait_lab/`` and ``widgets/`` with :mod:`ast` (nothing is imported), so
a violation names the file and line. The layer order is the data path that
``docs/architecture.md`` draws; change both together.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trait_lab", "widgets")
MAX_LINES = 450

#: trait_lab's subpackages, lowest first: a module may import only from its own layer or below.
LAYERS = (
    "core",
    "math",
    "io",
    "models",
    "hooks",
    "prompts",
    "traits",
    "generation",
    "activations",
    "extraction",
    "evaluation",
    "vectors",
    "dynamics",
)
#: top-level modules of trait_lab above every layer (the facade ``__init__`` is checked apart)
TOP = ("serve", "cli", "cli_types", "testing", "types", "__main__")
#: widgets' subpackages, lowest first
WIDGET_LAYERS = ("common", "steering", "evaluation", "dynamics", "geometry")
#: third-party packages that may be imported inside a function (optional or slow to import)
LAZY_OK = {"vllm", "kaleido", "peft", "playwright", "fastapi", "uvicorn", "openai"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (a name imported from a module is not a module)
    names: tuple[str, ...]
    line: int
    in_function: bool
    type_checking: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.imports: list[Import] = []
        self.depth = 0
        self.type_checking = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self.type_checking += 1
            for child in node.body:
                self.visit(child)
            self.type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, target: str, names: tuple[str, ...], line: int) -> None:
        self.imports.append(
            Import(self.module, target, names, line, self.depth > 0, self.type_checking > 0)
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, (), node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, node)
        names = tuple(alias.name for alias in node.names)
        submodules = [n for n in names if f"{base}.{n}" in MODULES]
        for name in submodules:
            self._add(f"{base}.{name}", (), node.lineno)
        rest = tuple(n for n in names if n not in submodules)
        if rest or not submodules:
            self._add(base, rest, node.lineno)


def _imports() -> list[Import]:
    found = []
    for module, path in MODULES.items():
        visitor = _Visitor(module)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(visitor.imports)
    return found


IMPORTS = _imports()


def _ours(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def _where(imp: Import) -> str:
    return f"{MODULES[imp.module].relative_to(ROOT)}:{imp.line}"


def _rank(module: str) -> tuple[int, str] | None:
    """(layer index, layer) of a module, or None for the package roots and facades."""
    parts = module.split(".")
    if parts[0] == "trait_lab" and len(parts) > 1:
        if parts[1] in LAYERS:
            return LAYERS.index(parts[1]), parts[1]
        if parts[1] in TOP:
            return len(LAYERS), parts[1]
    if parts[0] == "widgets" and len(parts) > 1 and parts[1] in WIDGET_LAYERS:
        return WIDGET_LAYERS.index(parts[1]), parts[1]
    return None


def test_every_module_sits_in_a_layer() -> None:
    strays = [
        m for m in MODULES if _rank(m) is None and m not in PACKAGES and m != "widgets.__main__"
    ]
    assert strays == [], f"modules outside the declared layers: {strays}"


def test_no_import_runs_up_the_layers() -> None:
    bad = []
    for imp in IMPORTS:
        if not _ours(imp.target) or imp.type_checking:
            continue
        here, there = _rank(imp.module), _rank(imp.target)
        if imp.module.split(".")[0] != imp.target.split(".")[0]:
            continue  # widgets -> trait_lab is checked by test_widgets_use_the_public_surface
        if here is not None and there is not None and there[0] > here[0]:
            bad.append(f"{_where(imp)}: {here[1]} imports {imp.target} (layer {there[1]})")
    assert bad == [], "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    """Counts imports inside functions too: a lazy import hides a cycle, it does not remove it."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if _ours(imp.target) and not imp.type_checking and imp.target in MODULES:
            edges.setdefault(imp.module, set()).add(imp.target)
    assert _cycles(edges) == []


def test_no_private_names_from_other_modules() -> None:
    bad = []
    for imp in IMPORTS:
        if not _ours(imp.target) or imp.target == imp.module:
            continue
        private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        private_module = [
            part for part in imp.target.split(".") if part.startswith("_") and part != "__main__"
        ]
        if private or private_module:
            bad.append(f"{_where(imp)}: {imp.target} {private or ''}")
    assert bad == [], "\n".join(bad)


def test_our_imports_sit_at_module_top() -> None:
    bad = [
        f"{_where(imp)}: {imp.target}" for imp in IMPORTS if imp.in_function and _ours(imp.target)
    ]
    assert bad == [], "imports of trait_lab/widgets inside functions:\n" + "\n".join(bad)


def test_lazy_imports_only_for_optional_packages() -> None:
    bad = [
        f"{_where(imp)}: {imp.target}"
        for imp in IMPORTS
        if imp.in_function and not _ours(imp.target) and imp.target.split(".")[0] not in LAZY_OK
    ]
    assert bad == [], "imports inside functions (move them to the top):\n" + "\n".join(bad)


def test_internal_modules_do_not_import_the_facade() -> None:
    bad = [
        f"{_where(imp)}: from {imp.target} import {', '.join(imp.names)}"
        for imp in IMPORTS
        if imp.target in PACKAGES
        and imp.module.split(".")[0] == imp.target
        and imp.names
        and imp.names != ("__version__",)
        and not imp.type_checking
        and imp.module != imp.target
    ]
    assert bad == [], "\n".join(bad)


def test_widgets_use_the_public_surface() -> None:
    """widgets import trait_lab's top level or its subpackages, never a module inside one."""
    bad = [
        f"{_where(imp)}: {imp.target}"
        for imp in IMPORTS
        if imp.module.startswith("widgets")
        and imp.target.startswith("trait_lab.")
        and imp.target.count(".") > 1
    ]
    assert bad == [], "\n".join(bad)


def test_trait_lab_never_imports_the_ui() -> None:
    ui = ("widgets", "ipywidgets", "plotly", "anywidget")
    bad = [
        f"{_where(imp)}: {imp.target}"
        for imp in IMPORTS
        if imp.module.startswith("trait_lab") and imp.target.split(".")[0] in ui
    ]
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines; split it"
