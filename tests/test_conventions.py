"""Layering rules from architecture.md, checked rather than hoped for."""

from __future__ import annotations

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
