"""Fixtures for the browser tests: one server (own runs folder) and one page per test module."""

from __future__ import annotations

import pytest
from e2e_helpers import open_page, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("e2e-runs")
    proc, url = start_server(runs_dir)
    yield url, runs_dir
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b, pg = open_page(pw, server[0])
        yield pg
        b.close()
