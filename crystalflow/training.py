"""A plain training loop for any flow with ``.model`` and ``.loss(batch)``.

Features: seeded, deterministic batch order derived from (seed, epoch) so a resumed run sees the
same batches; EMA weights; warm-up + cosine learning rate as a pure function of the step; periodic
validation through a callback; atomic checkpoints (``last.pt`` always, ``best.pt`` on the best
validation score) and ``--resume`` from ``last.pt``; a CSV log of loss and validation score
against wall-clock time.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
from tqdm.auto import tqdm

from crystalflow import __version__
from crystalflow.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crystalflow.crystals.dataset import CrystalDataset
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


def train(
    flow: Flow,
    train_set: CrystalDataset,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    make_checkpoint: Callable[[dict, dict | None], Checkpoint],
    validate: Callable[[], float] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``flow.model`` by minimising ``flow.loss``.

    Args:
        flow: owns ``model`` and ``loss(batch, generator)``.
        train_set: training crystals.
        config: optimisation settings.
        out_dir: where ``last.pt``, ``best.pt`` and ``log.csv`` go.
        make_checkpoint: ``(ema_weights, train_state) -> Checkpoint`` (the caller knows the task).
        validate: returns a score to maximise (e.g. a match rate); called with EMA weights loaded.
        resume: continue from ``out_dir/last.pt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = flow.model
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    step, best, elapsed0 = 0, None, 0.0
    if resume:
        last = out / "last.pt"
        if not last.exists():
            raise CheckpointError(f"--resume given but {last} does not exist")
        ck = load_checkpoint(last)
        if not ck.train_state:
            raise CheckpointError(f"{last} has no training state to resume from")
        model.load_state_dict(ck.train_state["model"], strict=True)
        opt.load_state_dict(ck.train_state["optimizer"])
        ema = {k: v.clone() for k, v in ck.weights.items()}
        step, best, elapsed0 = ck.train_state["step"], ck.train_state["best"], ck.train_state["elapsed"]
    gen = torch.Generator().manual_seed(config.seed + 7919 * step)
    log_path = out / "log.csv"
    new_log = not log_path.exists() or not resume
    log_file = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(["step", "seconds", "lr", "loss", "parts", "val_score"])
    start = time.time() - elapsed0

    def checkpoint(path: Path) -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "best": best, "elapsed": time.time() - start, "config": config.to_dict()}
        save_checkpoint(make_checkpoint(ema, state), path)

    def run_validation() -> float | None:
        if validate is None:
            return None
        raw = copy.deepcopy(model.state_dict())
        model.load_state_dict(ema)
        model.eval()
        try:
            return float(validate())
        finally:
            model.load_state_dict(raw)
            model.train()

    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="train", unit="step")
    model.train()
    running = None
    while step < config.max_steps:
        if config.max_minutes is not None and (time.time() - start) > 60 * config.max_minutes:
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = train_set.batch(batch_indices(len(train_set), config.batch_size, step, config.seed))
        out_loss = flow.loss(batch, generator=gen)
        opt.zero_grad(set_to_none=True)
        out_loss.total.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(config.ema_decay, (1 + step) / (10 + step))
            for k, v in model.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    ema[k].copy_(v)
        step += 1
        loss_val = float(out_loss.total.detach())
        running = loss_val if running is None else 0.98 * running + 0.02 * loss_val
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        score = None
        if step % config.val_every == 0 or step == config.max_steps:
            score = run_validation()
            if score is not None and (best is None or score > best):
                best = score
                checkpoint(out / "best.pt")
            checkpoint(out / "last.pt")
            bar.write(f"step {step}: loss {running:.4f} val {score}")
        parts = ";".join(f"{k}={v:.4f}" for k, v in out_loss.parts.items())
        log.writerow([step, f"{time.time() - start:.1f}", f"{learning_rate(step - 1, config):.2e}",
                      f"{loss_val:.5f}", parts, "" if score is None else f"{score:.4f}"])
        if step % 50 == 0:
            log_file.flush()
    bar.close()
    if step % config.val_every != 0 and step != config.max_steps:
        checkpoint(out / "last.pt")
    log_file.close()
    best_path = out / "best.pt"
    return TrainResult(step, time.time() - start, best, out / "last.pt",
                       best_path if best_path.exists() else None)
