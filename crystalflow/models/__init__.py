"""Vector-field networks, chosen by name."""

from crystalflow.models.cspnet import Conditions, CSPNet, CSPNetConfig
from crystalflow.models.sgnet import SGConditions, SGNet, SGNetConfig

MODELS = {"cspnet": (CSPNet, CSPNetConfig), "sgnet": (SGNet, SGNetConfig)}


def build_model(name: str, config: dict | None = None):
    """Instantiate a registered network from its name and a config dict."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls, cfg_cls = MODELS[name]
    return cls(cfg_cls(**(config or {})))


__all__ = ["CSPNet", "CSPNetConfig", "Conditions", "SGNet", "SGNetConfig", "SGConditions",
           "MODELS", "build_model"]
