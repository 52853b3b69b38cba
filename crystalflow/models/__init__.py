"""Vector-field networks, chosen by name."""

from crystalflow.models.cspnet import Conditions, CSPNet, CSPNetConfig
from crystalflow.models.e3nn_net import E3NNConfig, E3NNNet
from crystalflow.models.sgnet import SGConditions, SGNet, SGNetConfig
from crystalflow.models.dngnet import DNGNet, DNGNetConfig

MODELS = {"cspnet": (CSPNet, CSPNetConfig), "sgnet": (SGNet, SGNetConfig), "e3nn": (E3NNNet, E3NNConfig),
          "dngnet": (DNGNet, DNGNetConfig)}


def build_model(name: str, config: dict | None = None):
    """Instantiate a registered network from its name and a config dict."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls, cfg_cls = MODELS[name]
    return cls(cfg_cls(**(config or {})))


__all__ = ["CSPNet", "CSPNetConfig", "Conditions", "SGNet", "SGNetConfig", "SGConditions",
           "DNGNet", "DNGNetConfig",
           "E3NNNet", "E3NNConfig",
           "MODELS", "build_model"]
