"""The package's layering, read from its source with ast (imports inside functions count):
no import cycle, and no core module imports a reporting or job module. Loading a model file
loads no data or training code."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tlkit"
# Every module of tlkit is in exactly one list; a new module must be added to one of them.
CORE = ["__init__", "system", "data", "cnn", "models", "flops", "modelfile", "train", "features",
        "evaluate", "label_efficiency", "finetune"]
UPPER = ["markup", "records", "findings", "plots", "comparison", "info", "pipeline", "colab", "course",
         "estimate", "book", "bench", "export", "predict", "service", "cli"]


def _targets(node: ast.AST, package: str, modules: set[str]) -> list[str]:
    """The package's modules one import statement names (``__init__`` for the package itself)."""
    if isinstance(node, ast.Import):
        names = [a.name.split(".") for a in node.names]
        return [parts[1] if len(parts) > 1 else "__init__" for parts in names if parts[0] == package]
    if isinstance(node, ast.ImportFrom):
        parts = (node.module or "").split(".") if node.level == 0 else [package, *filter(None, [node.module])]
        if parts[0] != package:
            return []
        if len(parts) > 1:
            return [parts[1]]
        return [a.name if a.name in modules else "__init__" for a in node.names]
    return []


def import_graph(folder: Path, package: str = "tlkit") -> dict[str, set[str]]:
    """Module → the modules of the same package it imports, for every ``*.py`` in ``folder``."""
    files = {p.stem: p for p in sorted(folder.glob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {t for node in ast.walk(tree) for t in _targets(node, package, set(files))} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def upward_edges(graph: dict[str, set[str]], core=CORE, upper=UPPER) -> list[tuple[str, str]]:
    """Every import from a core module up to a reporting or job module."""
    return sorted((a, b) for a in graph if a in core for b in graph[a] if b in upper)


def test_every_module_is_core_or_upper():
    graph = import_graph(PACKAGE)
    assert not set(CORE) & set(UPPER)
    assert set(graph) == set(CORE) | set(UPPER), (
        f"unclassified: {sorted(set(graph) - set(CORE) - set(UPPER))}; "
        f"listed but missing: {sorted(set(CORE) | set(UPPER) - set(graph))}")


def test_no_import_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def test_no_core_module_imports_upward():
    assert upward_edges(import_graph(PACKAGE)) == []


def test_the_checker_finds_planted_edges_and_cycles(tmp_path):
    """Every import form counts, inside functions too; the checks fail on a planted edge."""
    (tmp_path / "__init__.py").write_text("from tlkit.system import quiet\n")
    (tmp_path / "system.py").write_text("import os\n")
    (tmp_path / "records.py").write_text("from tlkit import TlkitError\nimport tlkit.models as m\n")
    (tmp_path / "models.py").write_text("def f():\n    from tlkit import records, system\n")
    (tmp_path / "data.py").write_text("from . import cnn\nfrom .system import x\nimport tlkit\n")
    (tmp_path / "cnn.py").write_text("from tlkit.bench import y\nimport keras.layers\n")
    (tmp_path / "bench.py").write_text("def g():\n    import tlkit.data\n")
    graph = import_graph(tmp_path)
    assert graph == {"__init__": {"system"}, "system": set(), "records": {"__init__", "models"},
                     "models": {"records", "system"}, "data": {"cnn", "system", "__init__"},
                     "cnn": {"bench"}, "bench": {"data"}}
    assert cycles(graph) == [["bench", "cnn", "data"], ["models", "records"]]
    assert upward_edges(graph) == [("cnn", "bench"), ("models", "records")]


def test_loading_a_model_file_loads_no_data_or_training_code(tmp_path):
    """A served model loads with tlkit's layers (registered in cnn and models) and without
    tlkit.data, tlkit.train or tlkit.features."""
    from tlkit.cnn import with_flip_tta
    from tlkit.modelfile import save_model
    from tlkit.models import build_classifier

    clf = build_classifier("cnn", 3, input_shape=(32, 32, 3))
    path = save_model(with_flip_tta(clf.model), tmp_path / "m.keras", ["a", "b", "c"])
    code = ("import json, sys\nfrom tlkit.modelfile import load_model\n"
            "model = load_model(sys.argv[1])[0]\n"
            "def leaves(m):\n"
            "    for l in m.layers:\n"
            "        yield l\n"
            "        yield from leaves(l) if hasattr(l, 'layers') else ()\n"
            "print(json.dumps({'layers': sorted({type(l).__module__ for l in leaves(model)}),\n"
            "                  'modules': sorted(m for m in sys.modules if m.startswith('tlkit'))}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"tlkit.cnn", "tlkit.models"} <= set(seen["layers"])
    assert not {"tlkit.data", "tlkit.train", "tlkit.features"} & set(seen["modules"]), seen["modules"]
