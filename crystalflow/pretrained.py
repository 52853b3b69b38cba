"""Build flows from checkpoints; find the checkpoints bundled with the package."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from crystalflow import __version__
from crystalflow.checkpoint import Checkpoint, load_checkpoint
from crystalflow.csp import CSPConfig, CSPFlow
from crystalflow.dng import DNGConfig, DNGFlow, SkeletonDistribution, allowed_from_stats
from crystalflow.errors import CheckpointError, CrystalflowError
from crystalflow.manifolds import LatticeChart
from crystalflow.models import build_model
from crystalflow.sgcsp import SGCSPConfig, SGCSPFlow

#: directory of the checkpoints shipped inside the package
BUNDLED_DIR = Path(__file__).parent / "checkpoints"
#: the default bundled checkpoint of each task
DEFAULTS = {"csp": "csp_mp_20.pt", "sgcsp": "sgcsp_mp_20.pt", "dng": "dng_mp_20.pt",
            "protein": "protein_db55.pt"}


def bundled_checkpoint(name: str) -> Path:
    """Path of a bundled checkpoint by file name (e.g. ``csp_perov_5.pt``)."""
    path = BUNDLED_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in BUNDLED_DIR.glob("*.pt"))
        raise CheckpointError(f"no bundled checkpoint {name!r}; bundled: {available}")
    return path


def resolve_checkpoint(path_or_name: str | os.PathLike | None, task: str) -> Path:
    """A user path, a bundled file name, or (None) the task's default bundled checkpoint."""
    if path_or_name is None:
        return bundled_checkpoint(DEFAULTS[task])
    p = Path(path_or_name)
    if p.is_file():
        return p
    if (BUNDLED_DIR / str(path_or_name)).is_file():
        return BUNDLED_DIR / str(path_or_name)
    raise CheckpointError(f"no such checkpoint: {path_or_name}")


@contextlib.contextmanager
def checkpoint_config_errors(what: str = "checkpoint") -> Iterator[None]:
    """Turn a config that does not fit the code (unknown or missing keys, bad values) into one
    :class:`CheckpointError` line instead of a traceback."""
    try:
        yield
    except CrystalflowError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise CheckpointError(f"{what} has a config this version cannot use: {detail}") from None


def model_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The checkpoint's network with its (EMA) weights loaded strictly, in eval mode."""
    with checkpoint_config_errors():
        model = build_model(ckpt.model_name, ckpt.model_config)
    try:
        model.load_state_dict(ckpt.weights, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"weights do not fit the model: {detail}") from None
    return model.to(device).eval()


def csp_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> CSPFlow:
    """Rebuild a :class:`CSPFlow` with the checkpoint's (EMA) weights, loaded strictly."""
    if ckpt.task != "csp":
        raise CheckpointError(f"checkpoint is for task {ckpt.task!r}, not 'csp'")
    model = model_from_checkpoint(ckpt, device)
    with checkpoint_config_errors():
        return CSPFlow(model, LatticeChart.from_state_dict(ckpt.stats["lattice_chart"]),
                       CSPConfig(**ckpt.task_config))


def sgcsp_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> SGCSPFlow:
    """Rebuild a space-group conditioned :class:`~crystalflow.sgcsp.SGCSPFlow` (EMA weights)."""
    if ckpt.task != "sgcsp":
        raise CheckpointError(f"checkpoint is for task {ckpt.task!r}, not 'sgcsp'")
    model = model_from_checkpoint(ckpt, device)
    with checkpoint_config_errors():
        return SGCSPFlow(model, LatticeChart.from_state_dict(ckpt.stats["lattice_chart"]),
                         SGCSPConfig(**ckpt.task_config))


def load_pretrained(path_or_name: str | os.PathLike | None = None, task: str = "csp",
                    device: str | torch.device = "cpu"):
    """Load a flow and its checkpoint (default: the bundled checkpoint of ``task``).

    ``task="csp"`` returns a :class:`CSPFlow`, ``task="sgcsp"`` an
    :class:`~crystalflow.sgcsp.SGCSPFlow`, ``task="dng"`` a ``(DNGFlow, SkeletonDistribution)`` pair.
    """
    ckpt = load_checkpoint(resolve_checkpoint(path_or_name, task))
    if task == "dng":  # (DNGFlow, SkeletonDistribution)
        return dng_flow_from_checkpoint(ckpt, device), ckpt
    if task == "sgcsp":
        return sgcsp_flow_from_checkpoint(ckpt, device), ckpt
    return csp_flow_from_checkpoint(ckpt, device), ckpt


def make_flow_checkpoint(task: str, flow, model_name: str, stats: dict, weights: dict,
                         train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of any flow (``task``: csp, sgcsp, dng, protein): the network's
    name and config, the flow's config, data statistics, weights and (while training) the train
    state."""
    return Checkpoint(
        task=task, model_name=model_name, model_config=flow.model.config.to_dict(),
        task_config=flow.config.to_dict(), stats=stats, weights=weights, version=__version__,
        train_state=train_state,
    )


def make_csp_checkpoint(flow: CSPFlow, model_name: str, stats: dict, weights: dict,
                        train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of a CSP flow (task ``csp``)."""
    return make_flow_checkpoint("csp", flow, model_name, stats, weights, train_state)


def make_sgcsp_checkpoint(flow, model_name: str, stats: dict, weights: dict,
                          train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of a space-group conditioned CSP flow (task ``sgcsp``)."""
    return make_flow_checkpoint("sgcsp", flow, model_name, stats, weights, train_state)


def make_dng_checkpoint(flow, model_name: str, stats: dict, weights: dict,
                        train_state: dict | None) -> Checkpoint:
    """Assemble the checkpoint of a de-novo generation flow (task ``dng``)."""
    return make_flow_checkpoint("dng", flow, model_name, stats, weights, train_state)


def dng_flow_from_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu"
                             ) -> tuple[DNGFlow, SkeletonDistribution]:
    """Rebuild a :class:`~crystalflow.dng.DNGFlow` (EMA weights) and its skeleton distribution."""
    if ckpt.task != "dng":
        raise CheckpointError(f"checkpoint is for task {ckpt.task!r}, not 'dng'")
    model = model_from_checkpoint(ckpt, device)
    with checkpoint_config_errors():
        chart = LatticeChart.from_state_dict(ckpt.stats["lattice_chart"])
        flow = DNGFlow(model, chart, allowed_from_stats(ckpt.stats), DNGConfig(**ckpt.task_config))
        return flow, SkeletonDistribution.from_state_dict(ckpt.stats["skeletons"])
