"""The package's import directions (docs/design.md, "Dependency direction"): each part of
``selfsup`` imports only from the layers below its own, and no modules import each other in a
circle.  Imports inside functions count: a lazy import is still a dependency."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "selfsup"
# bottom to top; a part may import any part of a lower layer, and its own modules
LAYERS = [
    {"errors", "rng", "distributed", "precision"},
    {"io", "optim", "plots"},
    {"losses", "models", "data", "rundir"},
    {"methods"},
    {"config"},
    {"build"},
    {"eval", "export"},
    {"engine"},
    {"timeseries", "report"},
    {"bench"},
    {"api"},
    {"cli"},
]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The ``selfsup`` modules ``path`` imports (a name imported from a package counts as the
    package's submodule of that name when there is one)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "selfsup"


def test_every_part_of_the_package_has_a_layer():
    parts = {part(m) for m in graph()} - {"selfsup"}
    assert parts <= set(LAYER), f"parts with no layer in LAYERS: {sorted(parts - set(LAYER))}"


def test_imports_go_down_the_layers_only():
    wrong = sorted(f"{a} imports {b}" for a, targets in graph().items() for b in targets
                   if part(a) != "selfsup" and part(b) != part(a) and LAYER[part(b)] >= LAYER[part(a)])
    assert not wrong, "imports against docs/design.md's directions:\n" + "\n".join(wrong)


def test_no_import_circles():
    edges, index, low, stack, on_stack, circles = graph(), {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                circles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, f"modules importing each other in a circle: {circles}"


def test_the_checks_see_a_lazy_upward_import(tmp_path, monkeypatch):
    """The directions test fails for an import it must catch: a function-level import of the CLI."""
    fake = tmp_path / "selfsup"
    for source in PACKAGE.rglob("*.py"):
        target = fake / source.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    (fake / "losses" / "sneaky.py").write_text("def f():\n    from ..cli import main\n    return main\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    try:
        test_imports_go_down_the_layers_only()
    except AssertionError as exc:
        assert "selfsup.losses.sneaky imports selfsup.cli" in str(exc)
    else:
        raise AssertionError("the upward import went unnoticed")
