"""The layers of the package (docs/architecture.md): each module imports only from its own layer or
lower ones, at module level and inside functions alike, and no two modules import each other."""
import ast
from pathlib import Path

import svg_pyro
import svg_pyro.guides
import svg_pyro.models


# lowest first; a module belongs to the first entry that is its name or a package above it
LAYERS = [
    ("base", ["svg_pyro.errors", "svg_pyro.atomic", "svg_pyro.devices"]),
    ("data", ["svg_pyro.data"]),
    ("model", ["svg_pyro.config", "svg_pyro.models", "svg_pyro.guides", "svg_pyro.checkpoint"]),
    ("inference", ["svg_pyro.inference"]),
    ("evaluation", ["svg_pyro.evaluation"]),
    ("training", ["svg_pyro.training"]),
    ("interface", ["svg_pyro.cli", "svg_pyro.trained", "svg_pyro.__main__", "svg_pyro"]),
]


def modules() -> dict[str, Path]:
    """Every module of the installed package by name (models/ and guides/ install under svg_pyro)."""
    found = {}
    for package in (svg_pyro, svg_pyro.models, svg_pyro.guides):
        root = Path(package.__file__).parent
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package.__name__, *parts])
            found.setdefault(name, path)
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The svg_pyro modules a file imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] == "svg_pyro")
    return out - {name}


def layer(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "svg_pyro"):
            return index
    assert module == "svg_pyro", f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return len(LAYERS) - 1


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def test_every_module_imports_only_its_own_layer_or_lower_ones():
    edges = graph()
    assert len(edges) > 40 and "svg_pyro.models.svg" in edges and "svg_pyro.training.train" in edges
    upward = sorted(f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
                    for a, targets in edges.items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_no_two_modules_import_each_other_even_through_others():
    edges = {a: {b for b in targets if b in graph_names} for a, targets in graph().items()
             for graph_names in [set(modules())]}
    # a package's __init__ importing its own modules is how packages work, not a cycle
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in edges.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_layer_check_sees_an_import_inside_a_function(tmp_path):
    """The checker itself: an upward import hidden in a function body is found."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from svg_pyro.training.train import train\n    return train\n")
    found = imports(source, "svg_pyro.data.probe", set(modules()))
    assert found == {"svg_pyro.training.train"}
    assert layer("svg_pyro.training.train") > layer("svg_pyro.data.probe")


def test_modules_and_functions_stay_short_or_say_why():
    """No module over 350 lines; a function over 60 lines says in its docstring why it is long."""
    long_modules, long_functions = [], []
    for name, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > 350:
            long_modules.append(name)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                if "Longer than 60 lines" not in (ast.get_docstring(node) or ""):
                    long_functions.append(f"{name}.{node.name}")
    assert long_modules == [] and long_functions == []
