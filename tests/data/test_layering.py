"""The data pillar knows datasets, never models (docs/architecture.md)."""

import ast
from pathlib import Path

import embodia.data

FORBIDDEN = ("embodia.cerebellum", "embodia.brain", "embodia.runtime", "embodia.serve", "embodia.eval",
             "embodia.eval.recovery", "embodia.cli")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an `import` / `from ... import` names, at any depth (function bodies too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "embodia"]
    return out


def test_no_module_under_data_imports_a_layer_above_it():
    root = Path(embodia.data.__file__).parent
    bad = [f"{p.relative_to(root.parent)}:{line} imports {name}"
           for p in sorted(root.rglob("*.py")) for line, name in _imports(p)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, "\n".join(bad)
