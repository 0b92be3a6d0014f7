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
