"""An invariant periodic message-passing vector field in the style of DiffCSP's CSPNet.

Inputs are invariant descriptions of the crystal: atom types, fractional differences through
Fourier features (periodic in each lattice direction), the lattice in its standardised chart
(lengths and angles, invariant to rotations of the Cartesian frame) and the time. Outputs are a
fractional-coordinate velocity per atom ``[N, 3]`` and a lattice-chart velocity per crystal
``[B, 6]``. Hence: rotations of the Cartesian frame leave the output unchanged, permuting atoms
permutes it, and a global translation of all fractional coordinates leaves it unchanged.

Self-conditioning (``CSPNetConfig.self_condition``): the network also reads the previous
estimate of the clean crystal, ``x_t["sc_frac"] [N, 3]`` and ``x_t["sc_lattice"] [B, 6]``, as
further edge features (its chart and the Fourier features of its fractional differences, so the
invariances above hold) plus a flag that is 1 when an estimate is given. Without one they are zero.
These columns come last in every edge MLP's first layer, so a network without self-conditioning
gains it, computing the same function, by zero columns (:func:`add_self_condition_columns`).

Depth: every layer is a residual update ``h + node_mlp(...)`` whose node MLP ends in
``Linear, SiLU``; with that last linear at zero the layer is the identity (``SiLU(0) = 0``). So a
trained network gains layers after its own, computing the same function and still learning
(the zero linear's gradient is not zero), by :func:`add_identity_layers`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from crystalflow.crystals.crystal import MAX_ATOMIC_NUM
from crystalflow.crystals.graph import fully_connected_edges
from crystalflow.models.conditions import Conditions


@dataclass(frozen=True)
class CSPNetConfig:
    """Width, depth and feature sizes of :class:`CSPNet`."""

    hidden: int = 128
    layers: int = 4
    frequencies: int = 10
    time_dim: int = 64
    lattice_dim: int = 6
    #: width of optional per-atom conditioning features (e.g. space group / Wyckoff embeddings)
    cond_dim: int = 0
    #: read the previous clean-crystal estimate (``x_t["sc_frac"]``, ``x_t["sc_lattice"]``)
    self_condition: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_time(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[B] -> [B, dim]`` transformer-style embedding of times in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    ang = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def fourier_frac(d: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[E, 3] -> [E, 6 * frequencies]``: sin/cos of 2 pi k d, periodic with period 1."""
    k = torch.arange(frequencies, device=d.device, dtype=d.dtype)
    ang = 2 * math.pi * d[..., None] * k
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


def self_condition_width(config: CSPNetConfig) -> int:
    """Edge-feature columns of the self-conditioning input (0 without it): chart, Fourier
    features of the estimate's fractional differences and the "given" flag."""
    return config.lattice_dim + 6 * config.frequencies + 1 if config.self_condition else 0


def add_self_condition_columns(weights: dict[str, torch.Tensor],
                               target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` of a network without self-conditioning as a state dict of ``target`` (the same
    network with it): every edge MLP's first-layer weight ``[H, 2H + F]`` gets the target's extra
    columns as zeros, so the network computes the same function whatever the estimate."""
    out = dict(weights)
    for key, w in weights.items():
        want = target.get(key)
        if key.endswith("edge_mlp.0.weight") and want is not None and want.shape[1] > w.shape[1]:
            out[key] = torch.cat([w, w.new_zeros(w.shape[0], want.shape[1] - w.shape[1])], dim=1)
    return out


_LAYER_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def add_identity_layers(weights: dict[str, torch.Tensor],
                        target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` of a trained network as a state dict of ``target``, the same network with more
    message-passing layers: the trained layers keep their weights, every further layer takes
    ``target``'s (fresh) weights with its node MLP's last linear (``node_mlp.2``) at zero, so it
    is the identity and the deeper network computes the same function.

    Raises:
        ValueError: ``target`` lacks a key of ``weights`` or holds a further key outside the
            added layers (the networks differ in more than depth).
    """
    missing = [k for k in weights if k not in target]
    if missing:
        raise ValueError(f"the deeper network lacks {missing[:3]}: it differs in more than depth")
    out = dict(weights)
    for key, value in target.items():
        if key in weights:
            continue
        if _LAYER_KEY.search(key) is None:
            raise ValueError(f"{key} is new but not in an added layer: the networks differ in more than depth")
        zero = key.endswith("node_mlp.2.weight") or key.endswith("node_mlp.2.bias")
        out[key] = torch.zeros_like(value) if zero else value.clone()
    return out


def _mlp(din: int, dout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, dout), nn.SiLU(), nn.Linear(dout, dout), nn.SiLU())


class CSPLayer(nn.Module):
    """One round of fully connected message passing with a pre-norm residual update."""

    def __init__(self, hidden: int, edge_extra: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.edge_mlp = _mlp(2 * hidden + edge_extra, hidden)
        self.node_mlp = _mlp(2 * hidden, hidden)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge_feat: torch.Tensor) -> torch.Tensor:
        """``h [N, H]``, edges ``src, dst [E]``, ``edge_feat [E, F]`` -> ``[N, H]``.

        The edge MLP's first layer acts on ``[x_dst, x_src, edge_feat]``; it is evaluated as
        ``(x W_dst)[dst] + (x W_src)[src] + edge_feat W_edge + b`` (the same function), so the
        ``2H``-wide part is multiplied once per atom instead of once per edge (E ~ N * atoms
        per crystal), and the ``[E, H]`` sums (and, without autograd, the activations) are
        formed in place. The edge MLP was the dominant cost of training and sampling.
        """
        x = self.norm(h)
        first = self.edge_mlp[0]
        hid, w = x.shape[-1], first.weight  # w: [H, 2H + F] = [W_dst | W_src | W_edge]
        node = x @ torch.cat([w[:, :hid], w[:, hid:2 * hid]], dim=0).T  # [N, 2H]
        out = w.shape[0]
        pre = torch.nn.functional.linear(edge_feat, w[:, 2 * hid:], first.bias)  # [E, H]
        pre += node[:, :out].index_select(0, dst)  # in place: no further [E, H] buffers
        pre += node[:, out:].index_select(0, src)
        if torch.is_grad_enabled():
            msg = self.edge_mlp[1:](pre)
        else:  # sampling: activations in place too (edge_mlp = Linear, SiLU, Linear, SiLU)
            silu = torch.nn.functional.silu
            msg = silu(self.edge_mlp[2](silu(pre, inplace=True)), inplace=True)
        agg = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="mean")
        return h + self.node_mlp(torch.cat([x, agg], dim=-1))


class CSPNet(nn.Module):
    """Vector field ``(x_t, t, cond) -> {frac: [N, 3], lattice: [B, 6]}``."""

    def __init__(self, config: CSPNetConfig = CSPNetConfig()) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.type_embedding = nn.Embedding(MAX_ATOMIC_NUM + 1, h)
        self.input = nn.Linear(h + config.time_dim + config.cond_dim, h)
        edge_extra = config.lattice_dim + 6 * config.frequencies + self_condition_width(config)
        self.layers = nn.ModuleList([CSPLayer(h, edge_extra) for _ in range(config.layers)])
        self.out_norm = nn.LayerNorm(h)
        self.frac_head = nn.Linear(h, 3, bias=False)
        self.lattice_head = nn.Linear(h, config.lattice_dim, bias=False)

    def forward(self, x_t: dict[str, torch.Tensor], t: torch.Tensor, cond: Conditions) -> dict[str, torch.Tensor]:
        """Velocities of every field.

        Args:
            x_t: ``frac [N, 3]`` fractional coordinates, ``lattice [B, 6]`` standardised chart;
                for a self-conditioned network optionally ``sc_frac [N, 3]`` and
                ``sc_lattice [B, 6]``, the previous clean-crystal estimate.
            t: ``[B]`` time of each crystal.
            cond: atom types and batch layout.
        """
        h, pooled = self.encode(x_t, t, cond)
        return {"frac": self.frac_head(h), "lattice": self.lattice_head(pooled)}

    def encode(self, x_t: dict[str, torch.Tensor], t: torch.Tensor,
               cond: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        """The trunk before the heads: per-atom features ``h [N, hidden]`` after the last layer
        and their per-crystal mean ``[B, hidden]`` (arguments as in :meth:`forward`)."""
        frac, lat = x_t["frac"], x_t["lattice"]
        src, dst, edge_batch = fully_connected_edges(cond.num_atoms)
        parts = [lat[edge_batch], fourier_frac(frac[src] - frac[dst], self.config.frequencies)]
        if self.config.self_condition:
            parts.append(self.self_condition_features(x_t, src, dst, edge_batch))
        edge_feat = torch.cat(parts, dim=-1)
        temb = sinusoidal_time(t, self.config.time_dim)[cond.batch]
        feats = [self.type_embedding(cond.atom_types), temb]
        if self.config.cond_dim:
            if cond.node_features is None:
                raise ValueError("this network expects Conditions.node_features")
            feats.append(cond.node_features)
        h = self.input(torch.cat(feats, dim=-1))
        for layer in self.layers:
            h = layer(h, src, dst, edge_feat)
        h = self.out_norm(h)
        pooled = scatter(h, cond.batch, dim=0, dim_size=cond.num_atoms.shape[0], reduce="mean")
        return h, pooled

    def self_condition_features(self, x_t: dict[str, torch.Tensor], src: torch.Tensor, dst: torch.Tensor,
                                edge_batch: torch.Tensor) -> torch.Tensor:
        """``[E, self_condition_width]`` edge features of the estimate in ``x_t`` (``sc_frac [N, 3]``,
        ``sc_lattice [B, 6]``): its chart, the Fourier features of its fractional differences and
        a 1; zeros when ``x_t`` holds no estimate."""
        width = self_condition_width(self.config)
        ref = x_t["frac"]
        if x_t.get("sc_frac") is None or x_t.get("sc_lattice") is None:
            return ref.new_zeros(src.shape[0], width)
        d = x_t["sc_frac"][src] - x_t["sc_frac"][dst]
        return torch.cat([x_t["sc_lattice"][edge_batch], fourier_frac(d, self.config.frequencies),
                          ref.new_ones(src.shape[0], 1)], dim=-1)
