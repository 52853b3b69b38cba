"""Vector-field networks, chosen by name."""

from crystalflow.models.conditions import Conditions, SGConditions
from crystalflow.models.cspnet import CSPNet, CSPNetConfig
from crystalflow.models.e3nn_net import E3NNConfig, E3NNNet
from crystalflow.models.sgnet import SGNet, SGNetConfig
from crystalflow.models.dngnet import DNGNet, DNGNetConfig

MODELS = {"cspnet": (CSPNet, CSPNetConfig), "sgnet": (SGNet, SGNetConfig), "e3nn": (E3NNNet, E3NNConfig),
          "dngnet": (DNGNet, DNGNetConfig)}


#: width x depth a network gets when the user gives none (``crystalflow train`` without
#: ``--hidden/--layers``): sized for a CPU, the sizes of the bundled checkpoints and of the
#: CSPNet / e3nn comparison in BENCHMARKS.md (e3nn 64x3 costs about what CSPNet 128x4 does per step)
DEFAULT_SIZES = {"cspnet": (128, 4), "sgnet": (128, 4), "dngnet": (128, 4), "e3nn": (64, 3)}


#: the network ``crystalflow train --task csp`` builds when ``--model`` is not given: the winner of
#: the same-budget comparison of BENCHMARKS.md for that benchmark. e3nn on Perov-5 (75.8% against
#: the bundled CSPNet's 70.0% with half its training time; 45.9% vs 23.2% at 12 minutes each);
#: CSPNet on MP-20 (9.9% vs 7.8% at 15 minutes each, and 2-3x cheaper sampling) and elsewhere.
DEFAULT_CSP_NETWORK = {"perov_5": "e3nn"}


def default_csp_network(dataset: str | None) -> str:
    """Name of the P1 CSP network for a benchmark (``None`` or other data: ``cspnet``)."""
    return DEFAULT_CSP_NETWORK.get(dataset or "", "cspnet")


def default_size(name: str, hidden: int | None = None, layers: int | None = None) -> dict:
    """``{"hidden", "layers"}`` of network ``name``: the given values, else its defaults."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    h, l = DEFAULT_SIZES[name]
    return {"hidden": h if hidden is None else hidden, "layers": l if layers is None else layers}


def check_size_matches(config: dict, hidden: int | None, layers: int | None, *,
                       grow_layers: bool = False) -> None:
    """Refuse a requested width / depth that differs from a checkpoint's network ``config``
    (``--init-from`` keeps the checkpoint's size; ``None`` = not requested). With
    ``grow_layers`` a larger depth is allowed: the network grows by identity layers
    (:func:`~crystalflow.models.cspnet.add_identity_layers`).

    Raises:
        InputError: ``hidden`` or ``layers`` is given and differs (``layers`` smaller, with
            ``grow_layers``).
    """
    from crystalflow.errors import InputError

    for key, given in (("hidden", hidden), ("layers", layers)):
        kept = config.get(key)
        if given is None or given == kept:
            continue
        if key == "layers" and grow_layers and kept is not None and given > kept:
            continue
        hint = (f"the checkpoint's network size is kept or grown by layers (layers >= {kept})"
                if key == "layers" and grow_layers else "the checkpoint's network size is kept")
        raise InputError(f"{key} {given} differs from the init_from checkpoint's {kept}; {hint}",
                         parameters=(key, "init_from"))


def build_model(name: str, config: dict | None = None):
    """Instantiate a registered network from its name and a config dict."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls, cfg_cls = MODELS[name]
    return cls(cfg_cls(**(config or {})))


__all__ = ["CSPNet", "CSPNetConfig", "Conditions", "SGNet", "SGNetConfig", "SGConditions",
           "DNGNet", "DNGNetConfig",
           "E3NNNet", "E3NNConfig",
           "MODELS", "DEFAULT_SIZES", "DEFAULT_CSP_NETWORK", "build_model", "check_size_matches", "default_csp_network",
           "default_size"]
