"""The one epoch loop of scapp: every model trains through ``Trainer.run(Phase)``.

A model brings its network, its optimizer, what one batch costs (``Phase.step``)
and how to validate; the Trainer owns everything around that — batches, the
optimizer step with gradient clipping, the learning-rate schedule, early stopping
on a named metric, keeping and restoring the best state, the Stop check between
batches, ETA, and the events the engine turns into ``metrics.jsonl`` and the
progress bar. Multi-phase methods (Hydra) run several phases in a row; loops that
are not epochs (Integrated Gradients over classes) go through ``iterate`` so they
report progress and honour Stop the same way.

Every event names the phase it belongs to, so the Train page can say what is
happening without knowing the method: ``phase`` (what a person reads, e.g.
"refining 25 models"), ``phase_key`` (a stable key the time estimates are kept
under: ``main`` for the run's main curve, else ``Phase.key`` or the ``key`` given),
and, while a phase counts something, ``phase_step`` / ``phase_steps`` /
``phase_unit`` ("epoch 12/30", "class 4/9"). ``eta_s`` / ``eta_max_s`` are the
seconds this phase still needs if early stopping ends it as soon as it can / if
it runs to its last epoch. A phase announces itself with ``phase_step = 0``
before its first (possibly long) epoch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from scapp.models.registry import Phase, PhaseResult
from scapp.tensors import batch_slices

__all__ = ["Trainer"]


class Trainer:
    """Runs phases; ``emit`` receives event dicts, ``should_stop`` is polled between batches."""

    def __init__(self, emit: Callable[[dict[str, Any]], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self._emit = emit or (lambda e: None)
        self._should_stop = should_stop or (lambda: False)
        self.stopped = False
        """True once a Stop request was seen; the phase that saw it ended early."""
        self.history: list[dict[str, Any]] = []
        """Epoch events of the main phase (``Phase.key is None``): the run's training curve."""
        self.phase_history: list[dict[str, Any]] = []
        """Epoch events of later phases (``refine_epoch``, ``mlp_loss`` …) and phase notes."""
        self.best_epoch: int | None = None
        """Kept epoch of the main phase."""

    # -- stop and events -----------------------------------------------------------------
    def should_stop(self) -> bool:
        if not self.stopped and self._should_stop():
            self.stopped = True
        return self.stopped

    def event(self, phase: str, progress: float | None = None, *, key: str | None = None, **fields: Any) -> None:
        """A note between epochs: ``phase`` names what is happening (for people), ``progress`` is the fit's
        fraction done, ``key`` the phase it starts for the time estimates (None: still the current one)."""
        ev = {"phase": phase, "epoch": len(self.history), **fields}
        if key is not None:
            ev["phase_key"] = key
        if progress is not None:
            ev["progress"] = round(float(progress), 4)
        self.phase_history.append(ev)
        self._emit(ev)

    def record_epoch(self, event: dict[str, Any]) -> None:
        """An epoch of a method without an epoch loop of its own (e.g. a closed-form fit)."""
        self.history.append(event)
        if event.get("best_epoch") is not None:
            self.best_epoch = event["best_epoch"]
        self._emit(event)

    def iterate(self, name: str, items: Iterable[Any], *, span: tuple[float, float] = (0.0, 1.0),
                unit: str = "step", key: str | None = None) -> Iterator[Any]:
        """Yield ``items`` one by one, reporting ``name: <unit> i/n`` progress; ends early on Stop (check
        ``stopped``). ``key``: the phase's key for time estimates (default: ``name``)."""
        items = list(items)
        n = max(len(items), 1)
        count = {"phase_steps": len(items), "phase_unit": unit}
        self.event(name, span[0], key=key or name, phase_step=0, **count)
        t0 = time.monotonic()
        for i, item in enumerate(items):
            if self.should_stop():
                return
            yield item
            done = time.monotonic() - t0
            left = done / (i + 1) * (len(items) - i - 1)
            self.event(name, span[0] + (span[1] - span[0]) * (i + 1) / n, key=key or name, step=i + 1,
                       steps=len(items), phase_step=i + 1, eta_s=left, eta_max_s=left, **count)

    # -- the epoch loop --------------------------------------------------------------------
    def run(self, phase: Phase) -> PhaseResult:
        """Train ``phase.module`` for up to ``max_epochs`` epochs; restore its best state when ``monitor`` is set."""
        main = phase.key is None
        ep_key = "epoch" if main else f"{phase.key}_epoch"
        loss_key = "train_loss" if main else f"{phase.key}_loss"
        sign = 1.0 if phase.mode == "min" else -1.0
        best, best_state, best_epoch, since_best = float("inf"), None, None, 0
        history: list[dict[str, Any]] = []
        params = [p for g in phase.optimizer.param_groups for p in g["params"]]
        count = {"phase_key": phase.key or "main", "phase_steps": phase.max_epochs, "phase_unit": "epoch"}
        self.event(phase.name, phase.span[0], phase_step=0, **count)  # before the first epoch, which may be long
        t_start = time.monotonic()
        epoch = 0
        for epoch in range(1, phase.max_epochs + 1):
            t0 = time.monotonic()
            phase.module.train()
            tot: torch.Tensor | None = None  # summed on the device: no host sync per batch
            seen = 0
            for batch in self._batches(phase, epoch):
                if self.should_stop():
                    break
                out = phase.step(batch)
                phase.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if phase.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, phase.grad_clip)
                phase.optimizer.step()
                v = (out.value if out.value is not None else out.loss).detach() * out.n
                tot = v if tot is None else tot + v
                seen += out.n
            if self.stopped:
                break
            ev: dict[str, Any] = {"phase": phase.name, ep_key: epoch, "max_epochs": phase.max_epochs,
                                  "phase_step": epoch, **count,
                                  loss_key: float(tot) / max(seen, 1) if tot is not None else float("nan"),
                                  "lr": phase.optimizer.param_groups[0]["lr"]}
            if not main:
                ev["epoch"] = len(self.history)
            if phase.epoch_fields is not None:
                ev.update(phase.epoch_fields(epoch))
            phase.module.eval()
            if phase.before_validate is not None:
                phase.before_validate()
            if phase.validate is not None:
                with torch.no_grad():
                    ev.update(phase.validate())
            self._step_scheduler(phase, ev)
            if phase.monitor is not None:
                score = ev.get(phase.monitor, ev.get(loss_key) if phase.monitor == "train_loss" else None)
                if score is None:  # no validation cells: follow the training loss
                    score, s = ev[loss_key], 1.0
                else:
                    s = sign
                if s * score < best - 1e-6:
                    best, best_epoch, since_best = s * score, epoch, 0
                    best_state = copy.deepcopy(phase.module.state_dict())
                else:
                    since_best += 1
            else:
                best_epoch = epoch
            now = time.monotonic()
            left = phase.max_epochs - epoch
            patience_left = (phase.patience - since_best) if phase.patience is not None and phase.monitor else left
            per_epoch = (now - t_start) / epoch  # this phase's mean so far: one slow epoch moves it little
            ev.update(epoch_s=now - t0, elapsed_s=now - t_start, best_epoch=best_epoch,
                      eta_s=per_epoch * min(left, patience_left), eta_max_s=per_epoch * left,
                      progress=phase.span[0] + (phase.span[1] - phase.span[0]) * epoch / max(phase.max_epochs, 1))
            history.append(ev)
            if main:
                self.history.append(ev)
                self.best_epoch = best_epoch
            else:
                self.phase_history.append(ev)
            self._emit(ev)
            if phase.patience is not None and phase.monitor is not None and since_best >= phase.patience:
                break
        if best_state is not None:
            phase.module.load_state_dict(best_state)
        phase.module.eval()
        return PhaseResult(epochs_run=len(history), best_epoch=best_epoch, stopped=self.stopped, history=history)

    @staticmethod
    def _batches(phase: Phase, epoch: int) -> Iterable[Any]:
        if phase.batches is not None:
            return phase.batches(epoch)
        return batch_slices(phase.n_items, phase.batch_size, generator=phase.generator, device=phase.device)

    @staticmethod
    def _step_scheduler(phase: Phase, ev: dict[str, Any]) -> None:
        sched = phase.scheduler
        if sched is None:
            return
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = ev.get(phase.scheduler_metric)
            sched.step(metric if metric is not None else ev.get("train_loss", ev.get(f"{phase.key}_loss")))
        else:
            sched.step()
