"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# scapp is not pip-installed in the dev venv: make the repo root importable.
_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real read-only datasets (``<workspace>/shared/data``)."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"
