"""A plain training loop for any flow with ``.model`` and ``.loss(batch)``.

Features: seeded, deterministic batch order derived from (seed, epoch) so a resumed run sees the
same batches; EMA weights; warm-up + cosine learning rate as a pure function of the step; periodic
validation through a callback; atomic checkpoints (``last.pt`` always, ``best.pt`` on the best
validation score) and ``--resume`` from ``last.pt`` (the noise generator's state is saved too, so a
resumed run continues the interrupted one exactly); a CSV log of loss and validation score
against wall-clock time (line-buffered, header once; a resume drops the rows past the
checkpoint's step). SIGINT / SIGTERM stop the run after the current step with a final atomic
``last.pt`` at that step (:class:`StopSignals`; ``TrainResult.stopped_by`` names the signal), so
``--resume`` continues it; a second Ctrl-C aborts at once.

Data parallel (``torchrun``, see :mod:`crystalflow.distributed`): every process derives the same
global batch from (seed, step) and trains on its contiguous shard (:func:`~crystalflow.distributed.shard`)
through ``DistributedDataParallel``, which averages the gradients; each process draws its own
noise (generator seeded by seed, step and rank). Rank 0 alone validates, writes checkpoints and
the log; the noise-generator states of all ranks go into the checkpoint, so resuming on the same
number of processes continues the same run. In one process nothing of this is active.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
from tqdm.auto import tqdm

from crystalflow.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crystalflow.crystals.dataset import CrystalDataset
from crystalflow.distributed import (
    DistInfo, any_across, barrier, gather_objects, mean_across, shard, wrap,
)
from crystalflow.errors import CheckpointError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    max_steps: int = 10000
    batch_size: int = 256
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    val_every: int = 500
    seed: int = 0
    max_minutes: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Flow(Protocol):
    model: torch.nn.Module

    def loss(self, batch, generator=None): ...


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Row indices of the batch at ``step``: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[k * batch_size:(k + 1) * batch_size].tolist()


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    best_score: float | None
    last_path: Path
    best_path: Path | None
    stopped_by: str | None = None  # "SIGINT" / "SIGTERM" when a signal ended the run early


class StopSignals:
    """Context manager turning SIGINT / SIGTERM into a stop request the training loop polls.

    The first signal sets :attr:`received` (the loop finishes its step, writes ``last.pt`` and
    returns); a second SIGINT raises ``KeyboardInterrupt`` (abort now). Outside the main thread,
    where Python cannot install handlers, it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = self.received or signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


#: columns of ``log.csv``
LOG_COLUMNS = ["step", "seconds", "lr", "loss", "parts", "val_score"]


def open_log(path: Path, resume_step: int | None):
    """Open ``log.csv`` for appending, line-buffered, with its header exactly once.

    A fresh run (``resume_step`` None) starts a new file. A resumed run keeps the rows up to the
    checkpoint's step and drops later ones (written after the last checkpoint, they will be
    trained again), rewriting the file atomically; an empty or missing log gets its header.
    """
    from crystalflow.crystals.crystal import write_text_atomic

    if resume_step is None or not path.exists() or path.stat().st_size == 0:
        fh = open(path, "w", newline="", buffering=1)
        csv.writer(fh).writerow(LOG_COLUMNS)
        return fh
    with open(path, newline="") as src:
        rows = list(csv.reader(src))
    kept = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= resume_step]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(LOG_COLUMNS)
    writer.writerows(kept)
    write_text_atomic(path, text.getvalue())
    return open(path, "a", newline="", buffering=1)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary checkpoint files a killed run left behind (``.last.pt.tmp<pid>``...)."""
    for name in ("last.pt", "best.pt"):
        for tmp in out.glob(f".{name}.tmp*"):
            tmp.unlink(missing_ok=True)


#: seed offset between the noise generators of different ranks
RANK_SEED_STRIDE = 1_000_003


@contextlib.contextmanager
def _forward_through(flow: Flow, module: torch.nn.Module):
    """Let ``flow.loss`` call ``module`` (the DDP wrapper) instead of ``flow.model`` for a while."""
    raw = flow.model
    if module is raw:
        yield
        return
    flow.model = module
    try:
        yield
    finally:
        flow.model = raw


def _to_device(batch, device: torch.device):
    """Move a batch to ``device`` when it is elsewhere (batches without a device pass through)."""
    here = getattr(batch, "device", None)
    if here is None or torch.device(here) == device:
        return batch
    return batch.to(device)


def local_loss(flow: Flow, module: torch.nn.Module, train_set, step: int, config: TrainConfig,
               info: DistInfo, generator: torch.Generator):
    """This process's loss at ``step``: the shard of the global batch, forward through ``module``.

    ``module`` is ``flow.model`` or its ``DistributedDataParallel`` wrapper; calling
    ``.total.backward()`` on the result leaves the gradient averaged over processes in
    ``flow.model``'s parameters.
    """
    idx = shard(batch_indices(len(train_set), config.batch_size, step, config.seed), info)
    batch = _to_device(train_set.batch(idx), info.device)
    with _forward_through(flow, module):
        return flow.loss(batch, generator=generator)


def train(
    flow: Flow,
    train_set: CrystalDataset,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    make_checkpoint: Callable[[dict, dict | None], Checkpoint],
    validate: Callable[[], float] | None = None,
    resume: bool = False,
    progress: bool = True,
    dist_info: DistInfo | None = None,
) -> TrainResult:
    """Train ``flow.model`` by minimising ``flow.loss``.

    Args:
        flow: owns ``model`` and ``loss(batch, generator)``.
        train_set: training crystals.
        config: optimisation settings (``batch_size`` is the global batch over all processes).
        out_dir: where ``last.pt``, ``best.pt`` and ``log.csv`` go.
        make_checkpoint: ``(ema_weights, train_state) -> Checkpoint`` (the caller knows the task).
        validate: returns a score to maximise (e.g. a match rate); called with EMA weights loaded,
            on rank 0 only.
        resume: continue from ``out_dir/last.pt``.

    Raises:
        CheckpointError: ``resume`` without a ``last.pt`` with training state.
        dist_info: this process's place in a data-parallel job (:func:`crystalflow.distributed.setup`);
            default: one process on the model's device.
    """
    with StopSignals() as stop:
        return _train(flow, train_set, config, out_dir, make_checkpoint, validate, resume, progress,
                      dist_info, stop)


def _train(flow: Flow, train_set: CrystalDataset, config: TrainConfig, out_dir: str | os.PathLike,
           make_checkpoint: Callable[[dict, dict | None], Checkpoint],
           validate: Callable[[], float] | None, resume: bool, progress: bool,
           dist_info: DistInfo | None, stop: StopSignals) -> TrainResult:
    """:func:`train`'s loop; ``stop`` tells it a signal asked to stop."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = flow.model
    if dist_info is None:
        dist_info = DistInfo(device=next(model.parameters()).device)
    info = dist_info
    model.to(info.device)
    main = info.is_main
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    step, best, elapsed0, rng_state = 0, None, 0.0, None
    if resume:
        last = out / "last.pt"
        if not last.exists():
            raise CheckpointError(f"resume given but {last} does not exist", parameters=("resume",))
        ck = load_checkpoint(last)
        if not ck.train_state:
            raise CheckpointError(f"{last} has no training state to resume from")
        model.load_state_dict(ck.train_state["model"], strict=True)
        opt.load_state_dict(ck.train_state["optimizer"])
        ema = {k: v.to(info.device).clone() for k, v in ck.weights.items()}
        step, best, elapsed0 = ck.train_state["step"], ck.train_state["best"], ck.train_state["elapsed"]
        states = ck.train_state.get("rng")
        if states is not None and len(states) == info.world_size:
            rng_state = states[info.rank]
        elif states is not None:
            warnings.warn(f"{last} was written by {len(states)} processes, resuming on "
                          f"{info.world_size}: the noise is re-seeded from the step")
    gen = torch.Generator(device=info.device).manual_seed(
        config.seed + 7919 * step + RANK_SEED_STRIDE * info.rank)
    if rng_state is not None:
        gen.set_state(rng_state)
    module = wrap(model, info)
    log_file = log = None
    if main:
        _remove_stale_temporaries(out)
        log_file = open_log(out / "log.csv", step if resume else None)
        log = csv.writer(log_file)
    start = time.time() - elapsed0
    float_keys = [k for k, v in ema.items() if v.dtype.is_floating_point]
    other_keys = [k for k in ema if k not in set(float_keys)]

    saved_step = step if resume else None

    def checkpoint(paths: list[Path]) -> None:
        """Save on rank 0; every rank must call it (the generator states are gathered)."""
        nonlocal saved_step
        saved_step = step
        rngs = gather_objects(gen.get_state(), info)
        if not main:
            return
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "best": best, "elapsed": time.time() - start, "config": config.to_dict(),
                 "rng": rngs, "world_size": info.world_size}
        ck = make_checkpoint(ema, state)
        for path in paths:
            save_checkpoint(ck, path)

    def run_validation() -> float | None:
        if validate is None or not main:
            return None
        raw = copy.deepcopy(model.state_dict())
        model.load_state_dict(ema)
        model.eval()
        try:
            return float(validate())
        finally:
            model.load_state_dict(raw)
            model.train()

    bar = tqdm(total=config.max_steps, initial=step, disable=not (progress and main), desc="train",
               unit="step")
    model.train()
    running = None
    while step < config.max_steps:
        over_time = config.max_minutes is not None and (time.time() - start) > 60 * config.max_minutes
        if any_across(over_time or stop.received is not None, info):
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, config)
        out_loss = local_loss(flow, module, train_set, step, config, info, gen)
        opt.zero_grad(set_to_none=True)
        out_loss.total.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(config.ema_decay, (1 + step) / (10 + step))
            state = model.state_dict()
            torch._foreach_mul_([ema[k] for k in float_keys], d)
            torch._foreach_add_([ema[k] for k in float_keys], [state[k].detach() for k in float_keys],
                                alpha=1 - d)
            for k in other_keys:
                ema[k].copy_(state[k])
        step += 1
        loss_val = mean_across(float(out_loss.total.detach()), info)
        running = loss_val if running is None else 0.98 * running + 0.02 * loss_val
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        score = None
        if step % config.val_every == 0 or step == config.max_steps:
            score = run_validation()
            paths = []
            if score is not None and (best is None or score > best):
                best = score
                paths.append(out / "best.pt")
            checkpoint(paths + [out / "last.pt"])
            if main:
                bar.write(f"step {step}: loss {running:.4f} val {score}")
        if main:
            parts = ";".join(f"{k}={v:.4f}" for k, v in out_loss.parts.items())
            log.writerow([step, f"{time.time() - start:.1f}", f"{learning_rate(step - 1, config):.2e}",
                          f"{loss_val:.5f}", parts, "" if score is None else f"{score:.4f}"])
    bar.close()
    if saved_step != step:  # stopped by time, a signal, or between validation steps
        checkpoint([out / "last.pt"])
    if log_file is not None:
        log_file.close()
    barrier(info)  # every process returns once rank 0's checkpoint is on disk
    best_path = out / "best.pt"
    return TrainResult(step, time.time() - start, best, out / "last.pt",
                       best_path if best_path.exists() else None, stopped_by=stop.received)
