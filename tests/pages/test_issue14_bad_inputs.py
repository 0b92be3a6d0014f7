"""Issue 14: the bad-input corpus (tests/data/bad/make_bad.py) through the Data, Train and Annotate pages (AppTest).

Every file gives a clear message on the page (the words the corpus names for it), never an exception; the file and
the folder it lies in are left as they were; no run folder is made for data that cannot be trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.data.bad.make_bad import LABEL, digest, make_corpus

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def runs_root(corpus, tmp_path_factory):
    """A runs folder holding one logreg run trained on the corpus's valid ``base`` file (what Annotate applies)."""
    from scapp import cli

    root = tmp_path_factory.mktemp("bad-runs") / "runs"
    assert cli.main(["train", str(corpus["base"].path), "--label", LABEL, "--model", "logreg", "--device", "cpu",
                     "--quiet", "--out", str(root / "base-logreg")]) == 0
    return root


@pytest.fixture
def app(runs_root, monkeypatch):
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_root))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=300)


def _state(corpus, runs_root: Path) -> dict:
    """What must not change: every input's digest, the corpus folder's listing, the run folders."""
    folder = next(iter(corpus.values())).path.parent
    return {"digests": {n: digest(c.path) for n, c in corpus.items()},
            "listing": sorted(str(p.relative_to(folder)) for p in folder.rglob("*")),
            "runs": sorted(os.listdir(runs_root))}


def _has_words(texts: list[str], words: tuple[str, ...]) -> bool:
    """Whether one of ``texts`` holds every word (case aside)."""
    return any(all(w.lower() in t.lower() for w in words) for t in texts)


def _texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def test_data_page_explains_every_bad_file(app, corpus, runs_root):
    before = _state(corpus, runs_root)
    app.run()
    problems = []
    for name, case in corpus.items():
        app.text_input(key="data-path").set_value(str(case.path)).run()
        errors, warnings = _texts(app, "error"), _texts(app, "warning")
        if app.exception:
            problems.append(f"{name}: exception {app.exception[0].message}")
        elif case.expect == "error" and not _has_words(errors, case.words):
            problems.append(f"{name}: no error saying {case.words}: {errors}")
        elif case.expect == "warn" and (errors or not _has_words(warnings, case.words)):
            problems.append(f"{name}: no warning saying {case.words} (errors {errors}, warnings {warnings})")
        elif case.expect not in ("error", "warn") and errors:
            problems.append(f"{name}: an error for a readable file: {errors}")
    assert not problems, "\n".join(problems)
    assert _state(corpus, runs_root) == before  # no input changed, nothing written beside them, no run made


def test_train_page_refuses_unusable_data_before_making_a_run(app, corpus, runs_root):
    """Data page → Train page → Start training, as a user would; a refusal must come before any run folder."""
    before = _state(corpus, runs_root)
    problems = []
    for name, case in corpus.items():
        if case.expect != "train_error":
            continue
        at = AppTest.from_file(APP, default_timeout=300)
        at.session_state["model"] = "logreg"  # the Model page's choice: any model that checks the data will do
        at.run()
        at.text_input(key="data-path").set_value(str(case.path)).run()
        at.switch_page("pages/train.py").run()
        start = [b for b in at.button if b.key == "train-start"]
        if start:
            start[0].click().run()
            if not _has_words(_texts(at, "error"), case.words):
                problems.append(f"{name}: Start gave no error saying {case.words}: {_texts(at, 'error')}")
        elif not _texts(at, "info"):  # e.g. two cells: no column looks like labels, so nothing can be started
            problems.append(f"{name}: no Start button and no reason why")
        if at.exception:
            problems.append(f"{name}: exception {at.exception[0].message}")
        if sorted(os.listdir(runs_root)) != before["runs"]:
            problems.append(f"{name}: a run folder was made: {sorted(os.listdir(runs_root))}")
    assert not problems, "\n".join(problems)
    assert _state(corpus, runs_root) == before


def test_train_page_refuses_a_label_column_the_file_lacks(app, corpus, runs_root):
    """A shared link (or a reload) naming a label column the file does not have: refused before any run folder."""
    before = sorted(os.listdir(runs_root))
    link = {"data": str(corpus["base"].path), "label": "celltype_typo", "model": "logreg"}
    # the link opened on the Train page (what restore_from_url makes of it: AppTest keeps no query parameters there)
    for key, value in (("dataset_path", link["data"]), ("label", link["label"]), ("model", link["model"])):
        app.session_state[key] = value
    app.switch_page("pages/train.py").run()
    app.button(key="train-start").click().run()
    assert not app.exception, app.exception
    assert _has_words(_texts(app, "error"), ("celltype_typo",)), _texts(app, "error")
    assert sorted(os.listdir(runs_root)) == before
    # opened on the Data page, the link's label is replaced by one the file has, and the page says so
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update(link)
    at.run()
    assert _has_words(_texts(at, "warning"), ("no label column 'celltype_typo'", f"showing '{LABEL}'"))
    assert at.selectbox(key="data-label").value == LABEL


def test_annotate_page_explains_every_bad_query(app, corpus, runs_root):
    before = _state(corpus, runs_root)
    app.run()
    app.switch_page("pages/annotate.py").run()
    problems = []
    for name, case in corpus.items():
        app.text_input(key="annotate-path").set_value(str(case.path)).run()
        errors = _texts(app, "error")
        predict = [b for b in app.button if b.key == "annotate-go"]
        if app.exception:
            problems.append(f"{name}: exception {app.exception[0].message}")
        elif case.expect in ("error", "predict_error") and not _has_words(errors, case.words):
            problems.append(f"{name}: no error saying {case.words}: {errors}")
        elif name in ("nan", "inf", "negative", "lognorm", "scaled") and (
                not errors or (predict and not predict[0].disabled)):
            problems.append(f"{name}: not-counts query without an error, or with Predict enabled: {errors}")
        elif name in ("base", "zero_genes") and (errors or not predict):
            problems.append(f"{name}: a valid query cannot be predicted: {errors}")
    assert not problems, "\n".join(problems)
    assert _state(corpus, runs_root) == before
