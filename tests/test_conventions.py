"""Layering rules from architecture.md, checked rather than hoped for."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_scapp_never_imports_streamlit():
    code = (
        "import sys, importlib, pkgutil, scapp\n"
        "for m in pkgutil.walk_packages(scapp.__path__, 'scapp.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.startswith('streamlit') or m.startswith('pages')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_pickle_anywhere_in_scapp():
    for p in (REPO / "scapp").rglob("*.py"):
        text = p.read_text()
        assert "import pickle" not in text and "torch.load(" not in text and "allow_pickle=True" not in text, p


# --------------------------------------------------------------------------- run-folder layout lives in runs.py


def _run_file_patterns() -> list[re.Pattern]:
    """What counts as naming a file of a run folder: each file's name (not as part of a longer name), the
    artifacts folder, the stop file and the display-map files."""
    from scapp.runs import LAYOUT

    names = {Path(rel).name for rel in LAYOUT.values()} - {"STOP"}
    pats = [re.compile(rf"(?<![\w.-]){re.escape(n)}(?![\w])") for n in sorted(names)]
    return pats + [re.compile(r"^\s*(STOP|artifacts)\s*$"), re.compile(r"(?<![\w.-])artifacts/"),
                   re.compile(r"(?<![\w-])umap_(proba|\d|\{)")]


def _literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal of a module, f-string pieces included; documentation (a string that
    is a statement of its own: module, class, function and attribute docstrings) left out."""
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def _run_file_literals(source: str) -> list[str]:
    pats = _run_file_patterns()
    return [f"line {line}: {text!r}" for line, text in _literals(source) if any(p.search(text) for p in pats)]


def test_the_checker_finds_a_run_file_name():
    bad = ('"""Reads metrics.json (a docstring may say so)."""\n'
           'def f(run, name):\n'
           '    """Also here: artifacts/markers.csv."""\n'
           '    a = run / "artifacts" / "markers.csv"\n'
           '    b = f"{run}/config.json"\n'
           '    c = run / "STOP"\n'
           '    d = f"{name}-markers.csv"  # a download name, not a run file\n'
           '    e = run / "metrics.jsonl"\n')
    found = _run_file_literals(bad)
    assert sorted(f.split(":")[0] for f in found) == ["line 4", "line 4", "line 5", "line 6", "line 8"], found


def test_no_run_file_name_outside_runs_py():
    """Only scapp/runs.py (RunStore) knows the files of a run folder; everything else goes through it."""
    files = [p for d in ("scapp", "pages", "bench") for p in sorted((REPO / d).rglob("*.py"))] + [REPO / "app.py"]
    bad = {}
    for p in files:
        if p == REPO / "scapp" / "runs.py":
            continue
        found = _run_file_literals(p.read_text())
        if found:
            bad[str(p.relative_to(REPO))] = found
    assert not bad, f"run-folder file names outside scapp/runs.py (use scapp.runs.RunStore): {bad}"


# --------------------------------------------------------------------------- layering between scapp's packages


def _imports(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_layering_between_packages():
    """architecture.md: train reaches models only through the registry; models know nothing of train, files or
    plots; runs is storage only; viz and evaluate know nothing of models; the engine draws no figures."""
    rules = {
        "train": lambda m: m.startswith("scapp.models") and m != "scapp.models.registry",
        "models": lambda m: m.startswith(("scapp.train", "scapp.runs", "scapp.viz", "streamlit")),
        "viz": lambda m: m.startswith(("scapp.models", "scapp.train", "scapp.runs")),
        "evaluate": lambda m: m.startswith(("scapp.models", "scapp.train", "scapp.viz")),
    }
    bad = []
    for pkg, forbidden in rules.items():
        for f in (REPO / "scapp" / pkg).rglob("*.py"):
            bad += [f"{f.relative_to(REPO)} imports {m}" for m in _imports(f) if forbidden(m)]
    runs_imports = _imports(REPO / "scapp" / "runs.py")
    bad += [f"scapp/runs.py imports {m}" for m in runs_imports
            if m.startswith(("scapp.evaluate", "scapp.models", "scapp.train", "scapp.viz"))]
    assert not bad, bad


def test_no_epoch_loop_inside_models():
    """The Trainer owns every epoch loop: no model file iterates over epochs or calls an optimizer itself."""
    for f in (REPO / "scapp" / "models").glob("*.py"):
        text = f.read_text()
        assert not re.search(r"for\s+epoch\s+in", text), f
        assert ".backward()" not in text and "optimizer.step()" not in text and "opt.step()" not in text, f
