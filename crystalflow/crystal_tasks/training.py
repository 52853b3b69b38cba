"""What the crystal tasks (csp, sgcsp, dng) bring to the shared training entry.

Each task gives :mod:`crystalflow.task_training` four functions (a
:class:`~crystalflow.task_training.TrainingSpec`): ``check_options(options)`` (options other tasks
use are refused, :func:`check_task_options`), ``load_data(options, progress)`` (train and
validation sets), ``build(data, options)`` (network, flow and data statistics) and
``validator(flow, data, options, device)``; device, processes, threads, EMA, checkpoints, resume
and logging are the entry's. Options of the three tasks are one :class:`CrystalTrainOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from crystalflow.checkpoint import Checkpoint, load_checkpoint
from crystalflow.crystal_tasks.stats import CrystalStats
from crystalflow.errors import InputError
from crystalflow.manifolds import LatticeChart
from crystalflow.task_training import Built, TrainData, TrainingSpec, heldout_loss_validator

__all__ = ["CSP_TRAINING", "CrystalTrainOptions", "DNG_TRAINING", "SGCSP_TRAINING", "TASK_OPTIONS",
           "check_task_options", "elements_seen"]


@dataclass(frozen=True)
class CrystalTrainOptions:
    """Data, network and validation options of a crystal training run.

    Attributes:
        dataset: a benchmark name (``perov_5``, ``carbon_24``, ``mp_20``), or
        data: a folder of CIF files / a CSV with a ``cif`` column (csp only), split into train and
            validation by ``val_fraction`` and ``split_seed``.
        data_dir: benchmark root (default ``$CRYSTALFLOW_DATA``).
        model / hidden / layers: network name and size (``None``: the task's default).
        lattice_weight: lattice loss weight (``None``: 0.1 for csp, 0.5 for sgcsp and dng).
        align_orbits: sgcsp coupling (nearest equivalent orbit point as the target).
        self_condition: sgcsp: a self-conditioned network (added to an ``init_from`` network
            without it as zero-started inputs, so training starts from the same function).
        t_late_fraction / t_late_min: sgcsp: this fraction of training times is drawn from
            ``U(t_late_min, 1)`` instead of ``U(0, 1)`` (:func:`crystalflow.paths.sample_times`).
        val_size / val_steps: validation crystals per check and ODE steps of their samples.
        seed: seed of the weights, the validation samples and the batches.
        init_from: a checkpoint (path or bundled name) to start from.
        train_on_val: sgcsp / dng on a benchmark with its own train split (MP-20): also train on
            ``val.csv`` after its first :data:`~crystalflow.crystals.dataset.SELECTION_ROWS` rows,
            which stay held out for validation and selection (the test split is never used).
        low_symmetry_repeats: sgcsp / dng: every training crystal of an orthorhombic, monoclinic or
            triclinic space group (number <= :data:`LOW_SYMMETRY_MAX_GROUP`) appears this many times
            per epoch (1: the data as it is), so more steps go to the groups with the most free
            Wyckoff parameters.
    """

    dataset: str | None = None
    data: str | None = None
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    model: str | None = None
    hidden: int | None = None
    layers: int | None = None
    lattice_weight: float | None = None
    align_orbits: bool = False
    self_condition: bool = False
    t_late_fraction: float = 0.0
    t_late_min: float = 0.8
    val_size: int = 200
    val_steps: int = 50
    seed: int = 0
    init_from: str | None = None
    train_on_val: bool = False
    low_symmetry_repeats: int = 1

    def __post_init__(self) -> None:
        if self.low_symmetry_repeats < 1:
            raise InputError(f"low_symmetry_repeats must be >= 1, got {self.low_symmetry_repeats}",
                             parameters=("low_symmetry_repeats",))


#: the highest orthorhombic space-group number: groups 1-74 are triclinic, monoclinic, orthorhombic
LOW_SYMMETRY_MAX_GROUP = 74


def repeat_low_symmetry(train_set, repeats: int):
    """``train_set`` (a :class:`~crystalflow.crystals.symmetric.SymmetricDataset`) with each crystal of
    space group <= :data:`LOW_SYMMETRY_MAX_GROUP` present ``repeats`` times (the copies appended)."""
    if repeats <= 1:
        return train_set
    low = (train_set.space_groups <= LOW_SYMMETRY_MAX_GROUP).nonzero().flatten().tolist()
    if not low:
        return train_set
    copies = train_set.subset(low)
    return type(train_set).concat([train_set, *([copies] * (repeats - 1))])


#: options that only some tasks use -> those tasks (any other task refuses the option when it is
#: not at its default, instead of ignoring it)
TASK_OPTIONS = {"data": ("csp",), "align_orbits": ("sgcsp",), "self_condition": ("sgcsp",),
                "t_late_fraction": ("sgcsp",), "train_on_val": ("sgcsp", "dng"),
                "low_symmetry_repeats": ("sgcsp", "dng")}


def check_task_options(options: CrystalTrainOptions, task: str) -> None:
    """Refuse an option of :data:`TASK_OPTIONS` that ``task`` (csp, sgcsp or dng) does not use and
    that is set away from its default. Needs no data: each task's
    :attr:`~crystalflow.task_training.TrainingSpec.check_options`.

    Raises:
        InputError: e.g. ``data applies to task csp only, not task sgcsp`` (naming the parameters).
    """
    for name, tasks in TASK_OPTIONS.items():
        if task not in tasks and getattr(options, name) != getattr(CrystalTrainOptions, name):
            which = f"task {tasks[0]} only" if len(tasks) == 1 else f"tasks {' and '.join(tasks)}"
            raise InputError(f"{name} applies to {which}, not task {task}", parameters=(name, "task"))


def _init_checkpoint(options: CrystalTrainOptions, task: str) -> Checkpoint | None:
    """The ``init_from`` checkpoint of ``task`` (or None); its network name must be ``options.model``
    when that is given, and a requested size must be the checkpoint's (for ``sgcsp`` a larger
    depth is allowed: the network grows, :func:`_continued_model`)."""
    if not options.init_from:
        return None
    from crystalflow.flow_checkpoints import resolve_checkpoint
    from crystalflow.models import check_size_matches

    ck = load_checkpoint(resolve_checkpoint(options.init_from, task))
    if ck.task != task:
        raise InputError(f"init_from needs a {task} checkpoint, got task {ck.task!r}", parameters=("init_from",))
    if options.model is not None and options.model != ck.model_name:
        raise InputError(f"init_from checkpoint holds model {ck.model_name!r}, not model {options.model}",
                         parameters=("init_from", "model"))
    check_size_matches(ck.model_config, options.hidden, options.layers,  # never ignored silently
                       grow_layers=task == "sgcsp")
    return ck


def elements_seen(atom_types: torch.Tensor, init: Checkpoint | None) -> tuple[int, ...] | None:
    """Atomic numbers a run trains on (``atom_types [N]``), with ``init``'s recorded ones; ``None``
    when ``init`` does not record them (then nothing is known)."""
    from crystalflow.crystal_tasks.composition import trained_elements

    seen = set(atom_types.tolist())
    if init is not None:
        before = trained_elements(init.stats)
        if before is None:
            return None
        seen |= before
    return tuple(sorted(seen))


# -- csp ------------------------------------------------------------------------------------------


def load_csp_data(options: CrystalTrainOptions, progress: bool) -> TrainData:
    """Train / validation crystals of ``options.dataset`` or ``options.data``."""
    from crystalflow.crystals import load_split
    from crystalflow.crystals.dataset import load_user_data, split_dataset

    if options.data is not None:
        parts = split_dataset(load_user_data(options.data, progress=progress),
                              val_fraction=options.val_fraction, seed=options.split_seed)
        return TrainData(parts["train"], parts["val"], f"user:{options.data}")
    return TrainData(load_split(options.dataset, "train", options.data_dir, progress=progress),
                     load_split(options.dataset, "val", options.data_dir, progress=progress),
                     options.dataset)


def build_csp(data: TrainData, options: CrystalTrainOptions) -> Built:
    """A P1 :class:`~crystalflow.crystal_tasks.csp.CSPFlow` (fresh, or continuing ``init_from``'s weights and chart)."""
    from crystalflow.crystal_tasks.csp import CSPConfig, CSPFlow
    from crystalflow.flow_checkpoints import model_from_checkpoint
    from crystalflow.models import build_model, default_csp_network, default_size

    init = _init_checkpoint(options, "csp")
    name = init.model_name if init is not None else options.model or default_csp_network(options.dataset)
    if init is not None:
        chart = LatticeChart.from_state_dict(init.stats["lattice_chart"])
        model = model_from_checkpoint(init).train()
    else:
        chart = LatticeChart.fit(data.train.lattice)
        model = build_model(name, default_size(name, options.hidden, options.layers))
    weight = 0.1 if options.lattice_weight is None else options.lattice_weight
    flow = CSPFlow(model, chart, CSPConfig(lattice_weight=weight))
    stats = CrystalStats.of_dataset(data.train, chart, data.name,
                                    elements=elements_seen(data.train.atom_types, init))
    if init is not None:
        stats = stats.with_init(str(options.init_from), init.stats)
    if options.data is not None:
        from dataclasses import replace

        stats = replace(stats, val_ids=tuple(data.val.material_ids))
    return Built(flow, name, stats.to_dict())


def csp_validator(flow, data: TrainData, options: CrystalTrainOptions,
                  device: torch.device) -> Callable[[], float] | None:
    """Match rate of P1 samples of the first ``val_size`` validation crystals (None for size 0)."""
    from crystalflow.crystal_tasks.validation import csp_validator as make

    if options.val_size <= 0:
        return None
    return make(flow, data.val, size=options.val_size, steps=options.val_steps, seed=options.seed,
                device=device)


# -- sgcsp and dng ----------------------------------------------------------------------------------


def load_symmetric_data(options: CrystalTrainOptions, progress: bool) -> TrainData:
    """Symmetrised conventional cells of the benchmark's train split and of the first validation
    rows (at least ``val_size`` and 500; the whole split when it is the training file). With
    ``train_on_val`` the training set also holds ``val.csv`` minus its first ``SELECTION_ROWS``
    rows, and validation draws from those first rows only."""
    from crystalflow.crystals.dataset import DATASETS, SELECTION_ROWS, resolve_data_dir
    from crystalflow.crystals.symmetric import SymmetricDataset, load_symmetric_split, split_by_csv_rows

    shares_val = DATASETS[options.dataset]["train"] == DATASETS[options.dataset]["val"]
    if options.train_on_val and shares_val:
        raise InputError(f"train_on_val needs a benchmark with its own train split; {options.dataset} "
                         "already trains on val.csv", parameters=("train_on_val", "dataset"))
    train_set = load_symmetric_split(options.dataset, "train", options.data_dir, progress=progress)
    root = resolve_data_dir(options.data_dir) / options.dataset
    if shares_val:
        val_set = load_symmetric_split(options.dataset, "val", options.data_dir, progress=progress)
    elif options.train_on_val:
        val_csv = root / DATASETS[options.dataset]["val"]
        full = SymmetricDataset.from_csv(val_csv, progress=progress, workers=2, warn=False)
        rest, val_set = split_by_csv_rows(full, val_csv, first=SELECTION_ROWS)
        train_set = SymmetricDataset.concat([train_set, rest])
    elif options.val_size > 0:  # only the first rows are needed: analyse (and cache) just those
        val_set = SymmetricDataset.from_csv(root / DATASETS[options.dataset]["val"],
                                            limit=max(options.val_size, 500), progress=progress)
    else:
        val_set = None
    return TrainData(repeat_low_symmetry(train_set, options.low_symmetry_repeats), val_set, options.dataset)


def _symmetric_stats(data: TrainData, chart: LatticeChart, **extra) -> CrystalStats:
    from crystalflow.symmetry.analysis import DEFAULT_SYMPREC

    return CrystalStats.of_dataset(data.train, chart, data.name, symprec=DEFAULT_SYMPREC, **extra)


def build_sgcsp(data: TrainData, options: CrystalTrainOptions) -> Built:
    """An :class:`~crystalflow.crystal_tasks.sgcsp.SGCSPFlow` on the family lattice chart of the training set."""
    from crystalflow.models import build_model, default_size
    from crystalflow.crystal_tasks.sgcsp import SGCSPConfig, SGCSPFlow
    from crystalflow.symmetry import family_lattice_chart

    name = options.model or "sgnet"
    if name != "sgnet":
        raise InputError("task sgcsp needs model sgnet", parameters=("task", "model"))
    init = _init_checkpoint(options, "sgcsp")
    if init is not None:
        chart = LatticeChart.from_state_dict(init.stats["lattice_chart"])
        model = _continued_model(init, self_condition=options.self_condition, layers=options.layers)
    else:
        chart = family_lattice_chart(data.train.lattice, data.train.space_groups)
        size = default_size(name, options.hidden, options.layers)
        model = build_model(name, {**size, "self_condition": options.self_condition})
    weight = 0.5 if options.lattice_weight is None else options.lattice_weight
    flow = SGCSPFlow(model, chart, SGCSPConfig(lattice_weight=weight, align_orbits=options.align_orbits,
                                               t_late_fraction=options.t_late_fraction,
                                               t_late_min=options.t_late_min))
    stats = _symmetric_stats(data, chart, elements=elements_seen(data.train.atom_types, init))
    if init is not None:
        stats = stats.with_init(str(options.init_from), init.stats)
    return Built(flow, name, stats.to_dict())


def _continued_model(init: Checkpoint, *, self_condition: bool = False,
                     layers: int | None = None) -> torch.nn.Module:
    """``init``'s network (train mode), grown as asked so that it computes the same function:
    ``self_condition`` adds the estimate inputs as zero columns
    (:func:`~crystalflow.models.cspnet.add_self_condition_columns`); ``layers`` above the
    checkpoint's adds identity layers after its own
    (:func:`~crystalflow.models.cspnet.add_identity_layers`). Neither asked: the checkpoint's
    network as it is."""
    from crystalflow.flow_checkpoints import model_from_checkpoint
    from crystalflow.models import build_model
    from crystalflow.models.cspnet import add_identity_layers, add_self_condition_columns

    config = dict(init.model_config)
    add_sc = self_condition and not config.get("self_condition", False)
    deeper = layers is not None and layers > config["layers"]
    if not (add_sc or deeper):
        return model_from_checkpoint(init).train()
    if add_sc:
        config["self_condition"] = True
    if deeper:
        config["layers"] = layers
    model = build_model(init.model_name, config)
    target = model.state_dict()
    model.load_state_dict(add_identity_layers(add_self_condition_columns(init.weights, target), target),
                          strict=True)
    return model.train()


def sgcsp_validator(flow, data: TrainData, options: CrystalTrainOptions,
                    device: torch.device) -> Callable[[], float] | None:
    """Match rate of space-group conditioned samples of the first ``val_size`` validation rows."""
    from crystalflow.crystal_tasks.validation import sgcsp_validator as make

    if options.val_size <= 0 or data.val is None:
        return None
    return make(flow, data.val, size=options.val_size, steps=options.val_steps, seed=options.seed,
                device=device)


def build_dng(data: TrainData, options: CrystalTrainOptions) -> Built:
    """A :class:`~crystalflow.crystal_tasks.dng.DNGFlow` generating the training set's elements.

    ``init_from`` an sgcsp checkpoint gives the trunk (the type head starts fresh, the lattice
    chart is fitted on the data); a dng checkpoint is continued whole: its weights, lattice chart,
    allowed elements (plus the data's) and sampling defaults (``lattice_weight`` overrides its loss
    weight when given).
    """
    from crystalflow.crystal_tasks.dng import NUM_TYPES, DNGConfig, DNGFlow, SkeletonDistribution, allowed_from_stats
    from crystalflow.flow_checkpoints import model_from_checkpoint, resolve_checkpoint
    from crystalflow.models import build_model, check_size_matches, default_size
    from crystalflow.symmetry import family_lattice_chart

    name = options.model or "dngnet"
    if name != "dngnet":
        raise InputError("task dng needs model dngnet", parameters=("task", "model"))
    chart = family_lattice_chart(data.train.lattice, data.train.space_groups)
    allowed = torch.zeros(NUM_TYPES, dtype=torch.bool)
    allowed[data.train.atom_types.unique()] = True
    config = DNGConfig(lattice_weight=0.5 if options.lattice_weight is None else options.lattice_weight)
    if options.init_from:
        ck = load_checkpoint(resolve_checkpoint(options.init_from, "sgcsp"))
        if ck.task not in ("sgcsp", "dng"):
            raise InputError(f"init_from needs an sgcsp or dng checkpoint, got task {ck.task!r}",
                             parameters=("init_from",))
        check_size_matches(ck.model_config, options.hidden, options.layers)  # the trunk is the checkpoint's
        if ck.task == "dng":
            model = model_from_checkpoint(ck).train()
            chart = LatticeChart.from_state_dict(ck.stats["lattice_chart"])
            allowed |= allowed_from_stats(ck.stats)
            weight = {} if options.lattice_weight is None else {"lattice_weight": options.lattice_weight}
            config = DNGConfig(**{**ck.task_config, **weight})
        else:
            model = build_model(name, dict(ck.model_config))  # DNGNetConfig is SGNet's
            missing, unexpected = model.load_state_dict(ck.weights, strict=False)
            if unexpected or any(not k.startswith("type_head") for k in missing):
                raise InputError(f"init_from weights do not fit: missing {missing}, unexpected {unexpected}",
                                 parameters=("init_from",))
    else:
        model = build_model(name, default_size(name, options.hidden, options.layers))
    flow = DNGFlow(model, chart, allowed, config)
    skeletons = SkeletonDistribution.from_templates(data.train.templates).state_dict()
    stats = _symmetric_stats(data, chart, allowed_types=tuple(allowed.nonzero().squeeze(-1).tolist()),
                             skeletons=skeletons, init_from=options.init_from or None)
    return Built(flow, name, stats.to_dict())


def dng_validator(flow, data: TrainData, options: CrystalTrainOptions,
                  device: torch.device) -> Callable[[], float] | None:
    """Negative DNG loss on the first ``val_size`` validation rows with fixed noise (no sampling)."""
    if options.val_size <= 0 or data.val is None:
        return None
    return heldout_loss_validator(flow, data.val, size=options.val_size, seed=options.seed,
                                  device=device, evenly_spaced=False)


CSP_TRAINING = TrainingSpec(load_csp_data, build_csp, csp_validator, "best_val_match_rate",
                            check_options=partial(check_task_options, task="csp"))
SGCSP_TRAINING = TrainingSpec(load_symmetric_data, build_sgcsp, sgcsp_validator, "best_val_match_rate",
                              check_options=partial(check_task_options, task="sgcsp"))
DNG_TRAINING = TrainingSpec(load_symmetric_data, build_dng, dng_validator,
                            check_options=partial(check_task_options, task="dng"))
