"""``python -m scapp``: everything the app does, headless (architecture.md, CLI contract).

User mistakes end with one line on stderr (``scapp: error: ...``) and exit code 2;
an internal error exits 1 with its traceback in the log. ``train`` prints the run
folder as its last line on stdout.
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

EXIT_USER = 2
EXIT_BUG = 1


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
    root.addHandler(h)
    if logfile is not None:
        fh = logging.FileHandler(logfile)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)


def _load_config_file(path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    from scapp.errors import ConfigError

    if not path:
        return {}, {}
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"Config file {path} does not exist.") from e
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
    from scapp import runs
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
    req = TrainRequest(data=str(Path(a.data).resolve()), label=a.label, model=a.model, layer=a.layer, epochs=a.epochs,
                       device=a.device, seed=a.seed, model_config=model_cfg, preprocess=pp,
                       valid_frac=a.valid_frac, test_frac=a.test_frac, drop_empty_cells=a.drop_empty_cells,
                       orientation=a.orientation, threshold=a.threshold, protein_key=a.protein_key,
                       from_run=from_run, parent=from_run)
    run = Path(a.run_dir) if a.run_dir else runs.create_run(a.model, out=a.out)
    return _execute(req, run, quiet=a.quiet)


def cmd_run_job(a: argparse.Namespace) -> int:
    """Run a job the app queued: its request is stored in the run folder; wait for earlier jobs first."""
    from scapp import runs
    from scapp.train.job import queued_work, wait_for_turn

    store = runs.RunStore.open(a.run)
    run = store.path
    req, work = queued_work(run)  # a training run, or a pretraining run queued by the app (issue 13)
    store.write_status("queued", pid=os.getpid())
    if not wait_for_turn(run):
        store.write_status("cancelled", message="Removed from the queue before it started.", has_model=False)
        print(run)
        return 3
    return _execute(req, run, quiet=True, work=work)


def cmd_retrain(a: argparse.Namespace) -> int:
    """Train the run's method with its settings again, on only the genes of its training file that QUERY has."""
    from scapp import runs
    from scapp.retrain import file_var, retrain_request

    q = Path(a.genes_from)
    query = file_var(q, orientation=a.orientation)  # its genes only; a missing or unreadable file says so
    req = retrain_request(a.run, query, query_name=q.name)
    run = runs.create_run(req.model, out=a.out)
    return _execute(req, run, quiet=a.quiet)


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
    run = runs.create_run("pretrain", out=a.out)
    return _execute(req, run, quiet=a.quiet, work=run_pretraining)


def _execute(req: Any, run: Path, *, quiet: bool, work: Any = None) -> int:
    """Train into ``run`` (``work(req, run)``, default ``run_training``); every way this can end is recorded in
    the run's status."""
    from scapp import runs
    from scapp.train.engine import run_training

    work = work or run_training

    run.mkdir(parents=True, exist_ok=True)
    log_path = runs.RunStore(run).log_path
    _setup_logging(not quiet, log_path)
    log = logging.getLogger("scapp.cli")

    def _term(signum: int, frame: Any) -> None:
        raise TrainingCancelled("Stopped by a signal before training finished.")

    signal.signal(signal.SIGTERM, _term)
    try:
        work(req, run)
    except KeyboardInterrupt:
        runs.write_status(run, "cancelled", error=None, message="Interrupted (Ctrl-C) before training finished.",
                          has_model=False)
        _err("interrupted; the run was marked cancelled")
        print(run)
        return 130
    except TrainingCancelled as e:
        runs.write_status(run, "cancelled", error=None, message=str(e), has_model=False, progress=None)
        log.warning("%s", e)
        print(run)
        return 3
    except ScappError as e:
        runs.write_status(run, "failed", error=str(e), has_model=False)
        log.info("failed: %s", e)
        _err(str(e))
        print(run)
        return EXIT_USER
    except MemoryError:
        msg = ("The machine ran out of memory. Train on fewer cells or genes (e.g. preprocess n_top_genes 2000), "
               "or use a machine with more memory.")
        runs.write_status(run, "failed", error=msg, has_model=False)
        _err(msg)
        print(run)
        return EXIT_USER
    except Exception as e:  # noqa: BLE001 - every crash must end as a readable failed status
        import torch

        if isinstance(e, torch.cuda.OutOfMemoryError):
            msg = ("The GPU ran out of memory. Use a smaller batch_size in the model options, fewer genes, "
                   "or --device cpu.")
            code = EXIT_USER
        else:
            msg = f"Internal error ({type(e).__name__}: {e}). Details are in {log_path}; please report it."
            code = EXIT_BUG
        logging.getLogger("scapp").error("%s\n%s", msg, traceback.format_exc())
        runs.write_status(run, "failed", error=msg, has_model=False)
        _err(msg)
        print(run)
        return code
    print(run)
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from scapp.annotate import annotate, load_run
    from scapp.data import load_dataset
    from scapp.errors import GeneOverlapError, InputError

    _setup_logging(not a.quiet)
    q = Path(a.query).resolve()
    for out in (a.out, a.csv):
        if out and Path(out).resolve() == q:
            raise InputError("The output path is the query file itself; scapp never overwrites its input.")
        if out and Path(out).is_dir():
            raise InputError(f"The output path {out} is a folder; give a file name inside it instead.")
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
        runs.write_table(Path(a.csv), res.to_table())
        print(Path(a.csv).resolve())
    if a.out:
        from scapp.annotate import write_annotated

        write_annotated(res, run, adata, a.out, denoised=a.denoised, layer=a.layer, min_frac=a.min_frac,
                        min_shared=a.min_shared)  # the denoised layers are streamed a block of cells at a time
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
    df = store.markers()
    df = df[df["rank"] <= a.top]
    if a.out:
        runs.write_table(Path(a.out), df)
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
    if Path(a.out).is_dir():
        raise InputError(f"The output path {a.out} is a folder; give a file name inside it instead.")
    run = load_run(a.run, device=str(resolve_device(a.device)))
    adata, _ = load_dataset(a.data)
    res = write_denoised(run, adata, a.out, layer=a.layer, genes=a.genes)  # streamed block by block
    print(res["overlap"].summary(), file=sys.stderr)
    print(res["path"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    from scapp.models.registry import names
    from scapp.evaluate.calibration import DEFAULT_THRESHOLD

    p = argparse.ArgumentParser(prog="scapp", description="Single-cell annotation and interpretation, headless.")
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("info", help="QC summary of a dataset as JSON")
    i.add_argument("data")
    i.add_argument("--orientation", default="auto", choices=["auto", "cells_x_genes", "genes_x_cells"])
    i.set_defaults(func=cmd_info)

    t = sub.add_parser("train", help="train a model; prints the run folder as the last line")
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
        return 130
    except BrokenPipeError:
        return 0
