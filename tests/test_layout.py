"""The package's shape: imports run one way, building blocks stay torch-only,
every module says its concept, and no function grows past two screens."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skebm"

# Layer C: the mathematics, in torch alone (see doc/contributing.rst).
BUILDING_BLOCKS = (
    "skebm._conditional_quadrature",
    "skebm._enumeration",
    "skebm._kernel_correction",
    "skebm.base_densities",
    "skebm.domains",
    "skebm.energies",
    "skebm.objectives",
    "skebm.partition",
    "skebm.samplers",
)
# Readable in two screens; numpydoc docstrings included.
MAX_FUNCTION_LINES = 120


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(name, path, modules):
    """The skebm modules that module ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import mod`` imports the module pkg.mod
            targets = [
                f"{base}.{alias.name}"
                if f"{base}.{alias.name}" in modules
                else base
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _graph():
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def test_no_import_circle():
    graph = _graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_building_blocks_import_no_estimator_and_no_sklearn():
    graph = _graph()
    modules = _modules()
    for name, imports in graph.items():
        if not name.startswith(BUILDING_BLOCKS):
            continue
        upward = sorted(i for i in imports if not i.startswith(BUILDING_BLOCKS))
        assert not upward, f"{name} (layer C) imports {upward}"
        source = modules[name].read_text()
        assert "sklearn" not in {
            n.split(".")[0]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for n in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
        }, f"{name} (layer C) imports scikit-learn"


def test_no_module_imports_the_package_root_but_the_top_ones():
    # Only the entry points above every estimator may import ``skebm`` itself
    # (the version lives in skebm._version, below everything).
    graph = _graph()
    for name, imports in graph.items():
        if name in {"skebm", "skebm.__main__", "skebm.io"}:
            continue
        assert "skebm" not in imports, f"{name} imports the package root"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_says_its_concept(name):
    doc = ast.get_docstring(ast.parse(_modules()[name].read_text()))
    assert doc and doc.splitlines()[0].strip(), f"{name} has no opening docstring"


def test_no_function_longer_than_two_screens():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, "functions over two screens: " + "; ".join(long)


def test_samplers_do_not_switch_on_energy_classes():
    # A binary energy owns its local updates (site_updates); the samplers
    # know no energy class.
    for path in (PACKAGE / "samplers").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (
                "energies" in node.module
            ):
                names = {alias.name for alias in node.names}
                assert not names & {
                    "BoltzmannEnergy", "IsingEnergy", "BinaryMLPEnergy", "MLPEnergy"
                }, f"{path.name} imports energy classes {names}"
