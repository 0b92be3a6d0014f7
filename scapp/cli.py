"""``python -m scapp``: everything the app does, headless (architecture.md, CLI contract).

User mistakes end with one line on stderr (``scapp: error: ...``) and exit code 2;
an internal error exits 1 with its traceback in the log. ``train`` prints the run
folder as its last line on stdout.

Exit codes (also in ``--help`` and the README): 0 the command did all it was asked (a run ``finished``);
1 internal error (a bug: please report it); 2 a user mistake, or a run that failed for a reason the user can
act on (bad input, disk full, out of memory); 3 a run was cancelled (the STOP file or the app's Stop button,
SIGTERM, or removed from the queue), whether or not its best epoch was kept (``has_model`` in its status says);
130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from scapp.errors import ScappError, TrainingCancelled

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130
EXIT_CODES = (f"exit codes: {EXIT_OK} done (a run finished); {EXIT_BUG} internal error (please report it); "
              f"{EXIT_USER} a user mistake, or a run failed for a reason you can act on (the message says which); "
              f"{EXIT_CANCELLED} a run was cancelled (STOP file, the app's Stop, SIGTERM), even if its best epoch "
              f"was kept; {EXIT_INTERRUPTED} Ctrl-C")


def _err(msg: str) -> None:
    print(f"scapp: error: {msg}", file=sys.stderr)


def _setup_logging(verbose: bool, logfile: Path | None = None) -> None:
    root = logging.getLogger("scapp")
    root.setLevel(logging.INFO)
    for old in root.handlers:
        old.close()  # a previous in-process call's training-log FileHandler
    root.handlers.clear()
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(message)s"))
    h.setLevel(logging.INFO if verbose else logging.WARNING)
    h.addFilter(lambda r: not getattr(r, "file_only", False))  # details for the run's log, not the terminal
    root.addHandler(h)
    if logfile is not None:
        fh = logging.FileHandler(logfile)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)


def _load_config_file(path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    from scapp.errors import ConfigError

    if not path:
        return {}, {}
    if Path(path).is_dir():
        raise ConfigError(f"Config file {path} is a folder; give the path of a JSON file of model options.")
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"Config file {path} does not exist.") from e
    except OSError as e:
        from scapp.runs import os_error_reason

        raise ConfigError(f"Config file {path} cannot be read: {os_error_reason(e)}.") from e
    except ValueError as e:
        raise ConfigError(f"Config file {path} is not valid JSON ({e}).") from e
    if not isinstance(d, dict):
        raise ConfigError(f"Config file {path} must hold a JSON object of model options.")
    pp = d.pop("preprocess", {}) or {}
    d.pop("model", None)
    return d, pp


def cmd_info(a: argparse.Namespace) -> int:
    from scapp.data import load_dataset

    _, qc = load_dataset(a.data, orientation=a.orientation)
    print(json.dumps(qc.to_dict(), indent=1, default=str))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from scapp.errors import ConfigError, InputError
    from scapp.models import get_spec
    from scapp.train.engine import TrainRequest

    if not Path(a.data).exists():
        raise InputError(f"No such file or folder: {a.data}")
    if a.epochs is not None and a.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, not {a.epochs}.")
    if not (0 <= a.valid_frac < 1 and 0 <= a.test_frac < 1 and a.valid_frac + a.test_frac < 1):
        raise ConfigError(f"--valid-frac ({a.valid_frac}) and --test-frac ({a.test_frac}) must each be in [0, 1) "
                          "and sum below 1.")
    if not 0 <= a.threshold <= 1:
        raise ConfigError(f"--threshold is a probability between 0 and 1, not {a.threshold}.")
    spec = get_spec(a.model)
    spec.load()  # unknown / not-yet models fail before a run folder exists
    if spec.capabilities.needs_labels and not a.label:
        raise ConfigError(f"--label is required: {a.model} learns cell types from an obs column of labels.")
    model_cfg, pp = _load_config_file(a.config)
    from_run = None
    if a.from_run:  # a pretraining run to start from: found (and checked) before a run folder exists
        from scapp.train.pretrain import load_pretraining

        from_run = str(load_pretraining(a.from_run).path)
    if a.min_cells_per_class < 0:
        raise ConfigError(f"--min-cells-per-class must be 0 or more, not {a.min_cells_per_class}.")
    req = TrainRequest(data=str(Path(a.data).resolve()), label=a.label, model=a.model, layer=a.layer, epochs=a.epochs,
                       device=a.device, seed=a.seed, model_config=model_cfg, preprocess=pp,
                       valid_frac=a.valid_frac, test_frac=a.test_frac, drop_empty_cells=a.drop_empty_cells,
                       orientation=a.orientation, threshold=a.threshold, protein_key=a.protein_key,
                       from_run=from_run, parent=from_run, min_cells_per_class=a.min_cells_per_class)
    if a.run_dir:
        return _execute(req, Path(a.run_dir), quiet=a.quiet)
    return _train_new_run(req, out=a.out, quiet=a.quiet)[0]


def _train_new_run(req: Any, *, out: str | None, quiet: bool, report_run: bool = True) -> tuple[int, Path]:
    """Check the request and read its data, then make the run folder and train into it: a mistyped label column,
    an unreadable file or too few cells leave no failed run behind."""
    from functools import partial

    from scapp import runs
    from scapp.train.engine import prepare_training, run_training

    _setup_logging(not quiet)
    runs.check_run_target(out)  # an --out that exists or lies under a file: said before the data is read
    prepared = prepare_training(req)
    run = runs.create_run(req.model, out=out)
    return _execute(req, run, quiet=quiet, work=partial(run_training, prepared=prepared), report_run=report_run), run


def cmd_run_job(a: argparse.Namespace) -> int:
    """Run a job the app queued: its request is stored in the run folder; wait for earlier jobs first."""
    from scapp import runs
    from scapp.train.job import queued_work, wait_for_turn

    store = runs.RunStore.open(a.run)
    run = store.path
    req, work = queued_work(run)  # a training run, or a pretraining run queued by the app (issue 13)
    store.write_status("queued", pid=os.getpid())
    with store.heartbeat():  # a queued job that waits its turn is alive too
        turn = wait_for_turn(run)
    if not turn:
        store.write_status("cancelled", message="Removed from the queue before it started.", has_model=False)
        print(run)
        return EXIT_CANCELLED
    return _execute(req, run, quiet=True, work=work)


def cmd_retrain(a: argparse.Namespace) -> int:
    """Train the run's method with its settings again, on only the genes of its training file that QUERY has."""
    from scapp.retrain import file_var, retrain_request

    q = Path(a.genes_from)
    query = file_var(q, orientation=a.orientation)  # its genes only; a missing or unreadable file says so
    req = retrain_request(a.run, query, query_name=q.name)
    return _train_new_run(req, out=a.out, quiet=a.quiet)[0]


def cmd_rerun(a: argparse.Namespace) -> int:
    """Train a run again from its config.json (same data, labels, split, options and seed) into a new run, and
    report how its metrics differ from the original's."""
    from dataclasses import replace

    from scapp import runs
    from scapp.rerun import compare_metrics, format_comparison, rerun_request

    req, notes = rerun_request(a.run)
    if a.device:
        req = replace(req, device=a.device)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    orig = runs.RunStore.open(a.run)
    rc, run = _train_new_run(req, out=a.out, quiet=a.quiet, report_run=False)
    if rc == EXIT_OK:
        cmp = compare_metrics(orig, runs.RunStore(run))
        print(json.dumps(cmp, indent=1, default=str) if a.json else format_comparison(cmp))
    print(run)
    return rc


def cmd_pretrain(a: argparse.Namespace) -> int:
    """Pretrain an encoder on the cells of one or more files (labels ignored) into a run of its own."""
    from scapp import runs
    from scapp.errors import ConfigError, InputError
    from scapp.models.registry import get_spec
    from scapp.train.pretrain import PretrainRequest, run_pretraining

    for p in [*a.data, *([a.genes_of] if a.genes_of else [])]:
        if not Path(p).exists():
            raise InputError(f"No such file or folder: {p}")
    if a.epochs is not None and a.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, not {a.epochs}.")
    model_cfg, _ = _load_config_file(a.config)
    if a.method != "tabnet":
        preset = get_spec("ssl").presets.get(a.preset)
        if preset is None:
            raise ConfigError(f"--preset must be one of {', '.join(get_spec('ssl').presets)}, not {a.preset!r}.")
        model_cfg = {**preset, **model_cfg}
    if a.mask_rate is not None:
        model_cfg["pretraining_ratio" if a.method == "tabnet" else "mask_rate"] = a.mask_rate
    req = PretrainRequest(data=[str(Path(p).resolve()) for p in a.data], method=a.method,
                          genes_of=str(Path(a.genes_of).resolve()) if a.genes_of else None, layer=a.layer,
                          epochs=a.epochs, device=a.device, seed=a.seed, model_config=model_cfg,
                          min_gene_cells=a.min_gene_cells, orientation=a.orientation)
    runs.check_run_target(a.out)
    run = runs.create_run("pretrain", out=a.out)
    return _execute(req, run, quiet=a.quiet, work=run_pretraining)


def _execute(req: Any, run: Path, *, quiet: bool, work: Any = None, report_run: bool = True) -> int:
    """Train into ``run`` (``work(req, run)``, default ``run_training``); every way this can end is recorded in
    the run's status, and the process beats (``RunStore.heartbeat``) while it works, so a killed one is told
    from a live one. Returns the exit code (module docstring); prints the run folder last unless ``report_run``
    is False (``rerun`` prints it after its report)."""
    from scapp import runs
    from scapp.train.engine import run_training

    work = work or run_training
    run = Path(run)
    store = runs.RunStore(run)

    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScappError(f"Cannot create the run folder {run}: {runs.os_error_reason(e)}.") from e
    log_path = store.log_path
    _setup_logging(not quiet, log_path)
    log = logging.getLogger("scapp.cli")

    def _term(signum: int, frame: Any) -> None:
        raise TrainingCancelled("Stopped by a signal before training finished.")

    def _fail(msg: str, code: int, *, trace: bool = False, terminal: bool = False) -> int:
        if trace:  # the traceback goes to the run's log; to the terminal too only for a bug
            logging.getLogger("scapp").error("%s\n%s", msg, traceback.format_exc(), extra={"file_only": not terminal})
        else:
            log.info("failed: %s", msg)
        try:
            runs.write_status(run, "failed", error=msg, has_model=False)
        except OSError:  # a full disk may refuse even the status: the message still reaches the user
            pass
        _err(msg)
        return code

    signal.signal(signal.SIGTERM, _term)
    code = EXIT_OK
    try:
        with store.heartbeat():
            work(req, run)
        if (store.status(check_alive=False) or {}).get("state") == "cancelled":  # stopped; best epoch kept
            code = EXIT_CANCELLED
    except KeyboardInterrupt:
        runs.write_status(run, "cancelled", error=None, message="Interrupted (Ctrl-C) before training finished.",
                          has_model=False)
        _err("interrupted; the run was marked cancelled")
        code = EXIT_INTERRUPTED
    except TrainingCancelled as e:
        runs.write_status(run, "cancelled", error=None, message=str(e), has_model=False, progress=None)
        log.warning("%s", e)
        code = EXIT_CANCELLED
    except ScappError as e:
        code = _fail(str(e), EXIT_USER)
    except MemoryError:
        code = _fail("The machine ran out of memory. Train on fewer cells or genes (e.g. preprocess n_top_genes "
                     "2000), or use a machine with more memory.", EXIT_USER)
    except Exception as e:  # noqa: BLE001 - every crash must end as a readable failed status
        if _is_cuda_oom(e):
            code = _fail(OUT_OF_GPU_MEMORY, EXIT_USER, trace=True)
        elif isinstance(e, OSError) and e.errno in _disk_full_errnos():
            code = _fail(f"disk full: free space in {run.parent} and train again (this run could not be saved; "
                         "finished runs are untouched).", EXIT_USER, trace=True)
        elif isinstance(e, OSError) and e.errno in _no_write_errnos():
            where = e.filename or run
            code = _fail(f"Cannot write {where}: {runs.os_error_reason(e)}. Give the run a folder you can write to "
                         "(--out, or $SCAPP_RUNS_DIR) and train again.", EXIT_USER, trace=True)
        else:
            code = _fail(f"Internal error ({type(e).__name__}: {e}). Details are in {log_path}; please report it.",
                         EXIT_BUG, trace=True, terminal=True)
    if report_run:
        print(run)
    return code


OUT_OF_GPU_MEMORY = ("out of GPU memory: try a smaller batch size (batch_size in the model options) or the CPU "
                     "(--device cpu), or train on fewer genes.")


def _is_cuda_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "CUDA out of memory" in str(e))


def _disk_full_errnos() -> set[int]:
    import errno

    return {errno.ENOSPC, errno.EDQUOT}


def _no_write_errnos() -> set[int]:
    import errno

    return {errno.EACCES, errno.EPERM, errno.EROFS}


def _check_output(path: str | None, flag: str, *inputs: str | os.PathLike) -> None:
    """Refuse an output path before any work: the input itself, a folder, a folder that does not exist (or a
    file in its place), or a folder this user cannot write in."""
    from scapp.errors import InputError

    if not path:
        return
    p = Path(path)
    if any(p.resolve() == Path(i).resolve() for i in inputs if i):
        raise InputError("The output path is the query file itself; scapp never overwrites its input.")
    if p.is_dir():
        raise InputError(f"The output path {path} is a folder; give a file name inside it instead.")
    parent = p.resolve().parent
    if not parent.is_dir():
        blocker = next((q for q in parent.parents if q.exists()), None)
        if parent.exists() or (blocker is not None and not blocker.is_dir()):
            raise InputError(f"{flag} {path}: {parent if parent.exists() else blocker} is a file, not a folder; "
                             "give a path inside an existing folder.")
        raise InputError(f"{flag} {path}: the folder {parent} does not exist; create it first or give a path "
                         "inside an existing folder.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{flag} {path}: cannot write in {parent} (permission denied); give a path in a folder "
                         "you can write to.")


def _write_output(path: str, flag: str, write: Any) -> None:
    """``write(path)``; a file that cannot be written (permission, read-only or full disk) is a user error."""
    try:
        write(Path(path))
    except OSError as e:
        from scapp.runs import os_error_reason

        raise ScappError(f"{flag} {path}: cannot write it ({os_error_reason(e)}); nothing was written. "
                         + ("Free space on that disk and try again." if e.errno in _disk_full_errnos()
                            else "Give a path in a folder you can write to.")) from e


def cmd_predict(a: argparse.Namespace) -> int:
    from scapp.annotate import annotate, load_run
    from scapp.data import load_dataset
    from scapp.errors import GeneOverlapError, InputError

    _setup_logging(not a.quiet)
    q = Path(a.query).resolve()
    _check_output(a.out, "--out", q)
    _check_output(a.csv, "--csv", q)
    from scapp.train.device import resolve_device

    if a.threshold is not None and not 0 <= a.threshold <= 1:
        raise InputError(f"--threshold is a probability between 0 and 1, not {a.threshold}.")
    if a.denoised and not a.out:
        raise InputError("--denoised adds layers to the annotated h5ad: give it with --out annotated.h5ad.")
    device = resolve_device(a.device)  # --device cuda without a GPU: a clear error, not a torch traceback
    run = load_run(a.run, device=str(device))
    if a.denoised and not run.capabilities.denoises:
        from scapp.models.registry import REGISTRY

        which = ", ".join(n for n, s in REGISTRY.items() if s.capabilities.denoises and s.available)
        raise InputError(f"--denoised: run {run.run_id} ({run.config['model']}) does not denoise counts; "
                         f"methods that do: {which}.")
    adata, _ = load_dataset(a.query, orientation=a.orientation)
    try:
        res = annotate(run, adata, layer=a.layer, threshold=a.threshold, min_frac=a.min_frac,
                       min_shared=a.min_shared, explain=False)
    except GeneOverlapError as e:
        from scapp.annotate import check_query
        from scapp.retrain import retrain_offer

        rep = check_query(run, adata, layer=a.layer, min_frac=a.min_frac, min_shared=a.min_shared)
        if rep.ok:  # not too few genes (e.g. duplicated names): nothing to offer
            raise
        raise GeneOverlapError(f"{e} {retrain_offer(run.path, adata).sentence(q)}") from e
    print(res.overlap.summary(), file=sys.stderr)
    if res.overlap.missing_important:
        print(f"missing top genes: {', '.join(res.overlap.missing_important[:20])}", file=sys.stderr)
    print(res.summary().to_string(index=False), file=sys.stderr)
    if a.check_labels:
        _print_label_check(res, adata, a.check_labels, a.label_map, run.classes)
    from scapp import runs

    if a.csv:
        _write_output(a.csv, "--csv", lambda p: runs.write_table(p, res.to_table()))
        print(Path(a.csv).resolve())
    if a.out:
        from scapp.annotate import write_annotated

        _write_output(a.out, "--out", lambda p: write_annotated(  # denoised layers: streamed a block at a time
            res, run, adata, str(p), denoised=a.denoised, layer=a.layer, min_frac=a.min_frac,
            min_shared=a.min_shared))
        print(Path(a.out).resolve())
    if not a.csv and not a.out:
        print(res.to_table().to_csv(index=False), end="")
    return 0


def cmd_ensemble(a: argparse.Namespace) -> int:
    """Combine finished runs on the same file, labels and split into a new ensemble run (copies of them inside)."""
    from scapp import runs
    from scapp.errors import ConfigError
    from scapp.train.ensemble import ensemble_runs

    if len(a.runs) < 2:
        raise ConfigError("Give at least two finished runs to combine.")
    if a.threshold is not None and not 0 <= a.threshold <= 1:
        raise ConfigError(f"--threshold is a probability between 0 and 1, not {a.threshold}.")
    for r in a.runs:  # every member is found before a folder is made
        runs.RunStore.open(r)
    run = runs.create_run("ensemble", out=a.out)
    _setup_logging(not a.quiet, runs.RunStore(run).log_path)
    try:
        res = ensemble_runs(a.runs, run, threshold=a.threshold)
    except ScappError as e:
        runs.write_status(run, "failed", error=str(e), has_model=False)
        raise
    if not a.quiet:
        for m in res["members"]:
            print(f"{m['run_id']} ({m['model']}): weight {m['weight']:.2f}, validation macro-F1 "
                  f"{(m['valid'] or {}).get('macro_f1') or float('nan'):.3f}", file=sys.stderr)
        print(f"ensemble: validation macro-F1 {res['valid']['macro_f1']:.3f}, test macro-F1 "
              f"{res['test'].get('macro_f1', float('nan')):.3f}", file=sys.stderr)
    print(run)
    return 0


def cmd_markers(a: argparse.Namespace) -> int:
    from scapp import runs
    from scapp.errors import RunError
    from scapp.models import get_spec

    store = runs.RunStore.open(a.run)
    cfg = store.config(missing_ok=True) or {}
    if cfg.get("model") and get_spec(cfg["model"]).capabilities.combines:
        ms = " ".join(str(m.path) for m in store.members())
        raise RunError(f"Run {store.id} is an ensemble: it has no markers of its own, its members do. "
                       f"Ask one of them: scapp markers MEMBER (members: {ms}).")
    _check_output(a.out, "--out")
    df = store.markers()
    df = df[df["rank"] <= a.top]
    if a.out:
        _write_output(a.out, "--out", lambda p: runs.write_table(p, df))
        print(Path(a.out).resolve())
    else:
        print(df.to_csv(index=False), end="")
    return 0


def _print_label_check(res, adata, column: str, map_file: str | None, classes: list[str]) -> None:
    """Agreement of the predictions with the query's own labels in ``column``, printed to stderr."""
    import json

    import pandas as pd

    from scapp.errors import InputError
    from scapp.evaluate.query_labels import check_labels

    if column not in adata.obs.columns:
        raise InputError(f"--check-labels: the query has no obs column {column!r}; it has: "
                         f"{', '.join(map(str, adata.obs.columns)) or 'none'}.")
    mapping = None
    if map_file:
        try:
            mapping = json.loads(Path(map_file).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"--label-map: cannot read {map_file} as JSON ({e}).") from e
        if not isinstance(mapping, dict):
            raise InputError("--label-map: give a JSON object {given label: model class, [classes] or \"(ignore)\"}.")
    try:
        chk = check_labels(res.labels(), adata.obs[column], classes, mapping=mapping, cell_ids=res.cell_ids,
                           confidence=res.confidence, column=column)
    except ValueError as e:
        raise InputError(f"--label-map: {e}") from e
    table = chk.per_label().copy()
    table["agreement"] = table["agreement"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    print(chk.summary(), file=sys.stderr)
    print(table.to_string(index=False), file=sys.stderr)


def cmd_umap(a: argparse.Namespace) -> int:
    """UMAP coordinates of a cells × k array: what the Annotate page's map runs in the background."""
    from scapp.query_map import run_map

    print(run_map(a.latent, a.out))
    return 0


def cmd_map(a: argparse.Namespace) -> int:
    """UMAP of a class-stratified sample of a run's cells, kept in the run (what Explore's cell map shows)."""
    from scapp import runs
    from scapp.errors import ConfigError, RunError
    from scapp.evaluate.embedding import compute_cell_map

    store = runs.RunStore.open(a.run)
    if not store.has_predictions:
        raise RunError(f"Run {store.id} has no predictions yet (state: {(store.status() or {}).get('state')}).")
    if a.cells < 20:
        raise ConfigError(f"--cells must be at least 20, not {a.cells}.")
    path = store.cell_map_path(a.cells)
    if not path.exists():
        compute_cell_map(store, a.cells)
    print(path)
    return 0


def cmd_denoise(a: argparse.Namespace) -> int:
    """Expected counts of every cell under a run whose method denoises, written as a layer of a copy of DATA."""
    from scapp.annotate import load_run
    from scapp.data import load_dataset
    from scapp.denoise import write_denoised
    from scapp.errors import InputError
    from scapp.train.device import resolve_device

    if Path(a.out).resolve() == Path(a.data).resolve():
        raise InputError("The output path is the input file itself; scapp never overwrites its input.")
    _check_output(a.out, "--out")
    run = load_run(a.run, device=str(resolve_device(a.device)))
    adata, _ = load_dataset(a.data)
    res = write_denoised(run, adata, a.out, layer=a.layer, genes=a.genes)  # streamed block by block
    print(res["overlap"].summary(), file=sys.stderr)
    print(res["path"])
    return 0


def cmd_runs(a: argparse.Namespace) -> int:
    """List the runs of the runs folder (state, model, data, test scores, created), or remove runs (``--rm``)."""
    import pandas as pd

    from scapp import runs

    root = Path(a.root).resolve() if a.root else runs.runs_root()
    if a.rm:
        stores = [runs.RunStore.open(r if not a.root or Path(r).is_dir() else root / r) for r in a.rm]
        for st in stores:  # each is checked first: nothing is removed when one of them is still running
            state = (st.status() or {}).get("state")
            if state in ("running", "queued"):
                raise runs.RunError(f"Run {st.id} is still {state}; stop it first (nothing was removed).")
        for st in stores:
            runs.delete_run(st.path)
            print(f"removed {st.path}")
        return EXIT_OK
    table = runs.list_runs(root)
    cols = ["run_id", "state", "model", "kind", "dataset", "label", "macro_f1", "accuracy", "created", "error", "path"]
    if a.json:
        t = table.reindex(columns=cols).astype(object)
        recs = [] if table.empty else t.where(t.notna(), None).to_dict("records")
        print(json.dumps(recs, indent=1, default=str))
        return EXIT_OK
    if table.empty:
        print(f"no runs in {root}", file=sys.stderr)
        return EXIT_OK
    show = table.reindex(columns=["run_id", "state", "model", "kind", "dataset", "macro_f1", "accuracy", "created"])
    for c in ("macro_f1", "accuracy"):
        show[c] = show[c].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}")
    show = show.fillna("").rename(columns={"run_id": "id", "dataset": "data", "macro_f1": "test macro-F1",
                                           "accuracy": "test accuracy"})
    print(show.to_string(index=False))
    failed = table[table["state"] == "failed"]
    for _, r in failed.iterrows():
        if r.get("error"):
            print(f"{r['run_id']} failed: {r['error']}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from scapp.models.registry import names
    from scapp.evaluate.calibration import DEFAULT_THRESHOLD

    p = argparse.ArgumentParser(prog="scapp", description="Single-cell annotation and interpretation, headless.",
                                epilog=EXIT_CODES)
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("info", help="QC summary of a dataset as JSON")
    i.add_argument("data")
    i.add_argument("--orientation", default="auto", choices=["auto", "cells_x_genes", "genes_x_cells"])
    i.set_defaults(func=cmd_info)

    t = sub.add_parser("train", help="train a model; prints the run folder as the last line", epilog=EXIT_CODES)
    t.add_argument("data")
    t.add_argument("--label", help="obs column with the cell types (required by every method that classifies)")
    t.add_argument("--model", default="sims", choices=names())
    t.add_argument("--out", help="run folder to create (default: a new folder under $SCAPP_RUNS_DIR or ./runs)")
    t.add_argument("--run-dir", help=argparse.SUPPRESS)  # an existing (queued) run folder made by the app
    t.add_argument("--epochs", type=int, help="maximum epochs (default: the method's)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--config", help="JSON file of model options (and an optional 'preprocess' object)")
    t.add_argument("--layer", help="layer holding raw counts (default .X; 'raw' for .raw)")
    t.add_argument("--protein-key", help="obsm key of raw protein (ADT) counts to use beside RNA (multimodal)")
    t.add_argument("--drop-empty-cells", action="store_true", help="leave out cells with zero counts")
    t.add_argument("--min-cells-per-class", type=int, default=0, metavar="N",
                   help="leave out classes with fewer than N labelled cells (default 0: keep all; classes under 3 "
                        "cells are trained on but not scored). A run needs at least 20 labelled cells and 2 classes "
                        "of 3 or more cells")
    t.add_argument("--valid-frac", type=float, default=0.15)
    t.add_argument("--test-frac", type=float, default=0.15)
    t.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="confidence below which a cell is Unassigned; kept in the run as the default for predict")
    t.add_argument("--orientation", default="auto", choices=["auto", "cells_x_genes", "genes_x_cells"])
    t.add_argument("--from", dest="from_run", metavar="PRETRAIN_RUN",
                   help="start from the encoder of a pretraining run (scapp pretrain): its genes, preprocessing and "
                        "layer widths; the run records it as its parent")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    pt = sub.add_parser("pretrain", help="learn an encoder from the cells of one or more files (labels ignored); "
                                         "prints the run folder as the last line")
    pt.add_argument("data", nargs="+", metavar="FILE", help="files of cells (reference, query, other unlabelled "
                                                             "files), aligned to one gene list")
    pt.add_argument("--out", help="run folder to create (default: a new folder under $SCAPP_RUNS_DIR or ./runs)")
    pt.add_argument("--method", default="mae", choices=["mae", "vicreg", "simclr", "tabnet"],
                    help="mae: masked autoencoder (default); vicreg / simclr: contrastive; tabnet: TabNet "
                         "pretraining whose encoder starts a SIMS run (--model sims --from RUN)")
    pt.add_argument("--genes-of", metavar="FILE",
                    help="align every file to this file's genes (e.g. the labelled reference you will fine-tune "
                         "on; default: the first FILE)")
    pt.add_argument("--preset", default="default", help="ssl preset: fast (a smaller CPU network), default, thorough")
    pt.add_argument("--epochs", type=int, help="maximum epochs (default: the method's)")
    pt.add_argument("--mask-rate", type=float, help="share of genes masked per cell (default 0.5)")
    pt.add_argument("--min-gene-cells", type=int, default=3,
                    help="keep genes detected in at least this many pretraining cells (0: all)")
    pt.add_argument("--config", help="JSON file of model options")
    pt.add_argument("--layer", help="layer holding raw counts (default .X; 'raw' for .raw)")
    pt.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--orientation", default="auto", choices=["auto", "cells_x_genes", "genes_x_cells"])
    pt.add_argument("--quiet", action="store_true")
    pt.set_defaults(func=cmd_pretrain)

    r = sub.add_parser("predict", help="annotate a query dataset with a trained run")
    r.add_argument("run", help="run folder (or run id)")
    r.add_argument("query")
    r.add_argument("--out", help="annotated .h5ad to write")
    r.add_argument("--csv", help="CSV of labels, confidence and per-class probabilities")
    r.add_argument("--threshold", type=float, default=None,
                   help="confidence below which a cell is Unassigned (default: the threshold the run was trained with)")
    r.add_argument("--layer")
    r.add_argument("--min-shared", type=int, default=250)
    r.add_argument("--min-frac", type=float, default=0.5)
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--orientation", default="auto", choices=["auto", "cells_x_genes", "genes_x_cells"])
    r.add_argument("--check-labels", metavar="COL",
                   help="compare the predictions with the query's own labels in obs column COL (printed to stderr)")
    r.add_argument("--label-map", metavar="FILE.json",
                   help="with --check-labels: {given label: model class, [classes] or \"(ignore)\"} for names "
                        "not matched automatically")
    r.add_argument("--denoised", action="store_true",
                   help="with --out, runs whose method denoises (ZiPo): also write the denoised counts as layers "
                        "scapp_denoised and scapp_denoised_nonzero (query genes; NaN where the run has no model; "
                        "cells x genes x 4 bytes per layer)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_predict)

    rt = sub.add_parser("retrain", help="train a run's method and settings again on only the genes a query shares "
                                        "with its training file; prints the new run folder as the last line")
    rt.add_argument("run", help="run folder (or run id) to retrain")
    rt.add_argument("--genes-from", required=True, metavar="QUERY",
                    help="the query whose genes to train on (the one the run could not annotate)")
    rt.add_argument("--out", help="run folder to create (default: a new folder under $SCAPP_RUNS_DIR or ./runs)")
    rt.add_argument("--orientation", default="auto", choices=["auto", "cells_x_genes", "genes_x_cells"],
                    help="of the query, for text tables")
    rt.add_argument("--quiet", action="store_true")
    rt.set_defaults(func=cmd_retrain)

    rr = sub.add_parser("rerun", help="train a run again from its saved settings (same data, labels, split, "
                                      "options, seed) and report how the metrics differ; prints the new run folder "
                                      "last",
                        epilog=EXIT_CODES)
    rr.add_argument("run", help="run folder (or run id) to train again")
    rr.add_argument("--out", help="run folder to create (default: a new folder under $SCAPP_RUNS_DIR or ./runs)")
    rr.add_argument("--device", choices=["auto", "cpu", "cuda"],
                    help="device to train on (default: the one the run asked for)")
    rr.add_argument("--json", action="store_true", help="the comparison as JSON instead of a table")
    rr.add_argument("--quiet", action="store_true")
    rr.set_defaults(func=cmd_rerun)

    rs = sub.add_parser("runs", help="list runs (state, model, data, test scores, created), or remove them with "
                                     "--rm; a run whose trainer stopped beating reads as failed")
    rs.add_argument("--json", action="store_true", help="one JSON object per run, with the failure reason")
    rs.add_argument("--rm", nargs="+", metavar="RUN", help="remove these runs (folders or ids); refuses a run "
                                                             "that is still running or queued; asks nothing")
    rs.add_argument("--root", help="runs folder (default: $SCAPP_RUNS_DIR or ./runs)")
    rs.set_defaults(func=cmd_runs)

    j = sub.add_parser("run-job", help=argparse.SUPPRESS)  # used by the app: run a queued run folder
    j.add_argument("run")
    j.set_defaults(func=cmd_run_job)

    e = sub.add_parser("ensemble", help="combine finished runs on the same data and split into one ensemble run")
    e.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or ids); at least two")
    e.add_argument("--out", help="run folder to create (default: a new folder under $SCAPP_RUNS_DIR or ./runs)")
    e.add_argument("--threshold", type=float, default=None,
                   help="confidence below which a cell is Unassigned (default: the first run's)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_ensemble)

    m = sub.add_parser("markers", help="per-class gene scores of a run as CSV")
    m.add_argument("run")
    m.add_argument("--out")
    m.add_argument("--top", type=int, default=50)
    m.set_defaults(func=cmd_markers)

    mp = sub.add_parser("map", help="UMAP of a class-stratified sample of a run's cells, kept in the run")
    mp.add_argument("run")
    mp.add_argument("--cells", type=int, default=20_000, help="cells in the sample (default 20,000)")
    mp.set_defaults(func=cmd_map)

    u = sub.add_parser("umap", help="UMAP coordinates (cells × 2, .npy) of a cells × k array (.npy)")
    u.add_argument("latent")
    u.add_argument("--out", required=True)
    u.set_defaults(func=cmd_umap)

    d = sub.add_parser("denoise", help="denoise counts with a run whose method denoises (ZiPo); writes a new h5ad")
    d.add_argument("run")
    d.add_argument("data")
    d.add_argument("--out", required=True)
    d.add_argument("--layer", help="layer holding raw counts (default .X; 'raw' for .raw)")
    d.add_argument("--genes", default="model", choices=["model", "query"],
                   help="model: the file holds the run's genes; query: keep the data's own genes (NaN where the "
                        "run has no model)")
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    d.set_defaults(func=cmd_denoise)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScappError as e:
        _err(str(e))
        return EXIT_USER
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except OSError as e:  # the machine, not scapp: a folder that cannot be written, a full disk
        if e.errno not in _disk_full_errnos() | _no_write_errnos():
            raise
        from scapp.runs import os_error_reason

        _err(f"cannot write {e.filename or 'a file'}: {os_error_reason(e)}; "
             + ("free space on that disk and try again." if e.errno in _disk_full_errnos()
                else "use a folder you can write to."))
        return EXIT_USER
