"""An SE(3)-equivariant residue-frame network in the style of AlphaFold's invariant point attention.

Input: residue frames ``(R [B, L, 3, 3], x [B, L, 3])`` (translations in nanometres), the time
``t [B]`` and a residue mask; residues are consecutive along L and the network knows only
sequence offsets and distances to the chain ends (clipped), never absolute positions, so it
applies to any length. Every feature the network computes is SE(3)-invariant: scalar
residue features, pair features built from sequence offsets, CA-CA distances, the direction of
``x_j`` in frame i (``R_i^T (x_j - x_i)``) and relative rotations ``R_i^T R_j``; point attention
places learned points in each local frame, compares them in the global frame (distances are
invariant) and reads the attended points back in the local frame. The outputs are expressed in
each residue's own frame, hence also invariant:

* ``rot``: ``[B, L, 3]`` body-frame axis-angle of the update ``R -> R Exp(rot)``;
* ``trans``: ``[B, L, 3]`` local translation update ``x -> x + R trans`` (nm);
* ``features``: ``[B, L, hidden]`` residue embeddings (scalars).

So rotating and translating the input frames by ``(Q, s)`` rotates and translates the updated
frames by the same ``(Q, s)``, the global translation update ``R trans`` rotates with Q, and the
scalars do not change. The network is not reflection-equivariant (proteins are chiral).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from crystalflow.manifolds.so3 import (
    axis_angle_to_quaternion, quaternion_log, quaternion_multiply, quaternion_to_matrix,
)


@dataclass(frozen=True)
class FrameNetConfig:
    """Sizes of :class:`FrameNet`.

    Attributes:
        hidden: residue feature width; pair: pair feature width; layers: attention blocks;
        heads: attention heads; head_dim: scalar query/key/value width per head;
        query_points / value_points: points per head; max_offset: sequence offsets are clipped
        to +-max_offset; rbf: radial basis functions over ``[0, rbf_max]`` nm of CA distance;
        time_dim: sinusoidal time embedding width; termini: distances to the chain ends are
        embedded up to this many residues (no absolute positions, so any length works);
        frame_updates: update the frames after every block (AlphaFold's structure module), so
        later blocks attend over the partly denoised structure; the output is the composition.
    """

    hidden: int = 128
    pair: int = 32
    layers: int = 4
    heads: int = 4
    head_dim: int = 16
    query_points: int = 4
    value_points: int = 4
    max_offset: int = 32
    rbf: int = 16
    rbf_max: float = 2.0
    time_dim: int = 32
    termini: int = 32
    frame_updates: bool = False
    self_condition: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameNetOutput:
    """Per-residue outputs, all in the residue's local frame (see the module docstring)."""

    rot: torch.Tensor
    trans: torch.Tensor
    features: torch.Tensor


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[...] -> [..., dim]`` transformer embedding of a scalar (time scaled by 1000 by callers)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=x.dtype) / half)
    ang = x.unsqueeze(-1) * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def pair_offsets(trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``diff [B, L, L, 3]`` (``x_j - x_i``) and ``dist [B, L, L]`` (smoothed at 0) of CA
    positions ``trans [B, L, 3]``."""
    diff = trans.unsqueeze(-3) - trans.unsqueeze(-2)  # [B, i, j, 3] = x_j - x_i
    return diff, (diff.pow(2).sum(-1) + 1e-8).sqrt()


def pair_geometry(rots: torch.Tensor, trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Invariant pair geometry.

    Returns:
        ``dist [B, L, L]`` CA distances, ``direction [B, L, L, 3]`` unit vector to j in frame i,
        ``relrot [B, L, L, 9]`` entries of ``R_i^T R_j``.
    """
    diff, dist = pair_offsets(trans)
    local = torch.einsum("bimk,bijm->bijk", rots, diff)  # R_i^T (x_j - x_i)
    direction = local / (dist.unsqueeze(-1) + 1e-2)
    relrot = torch.einsum("bimk,bjml->bijkl", rots, rots).flatten(-2)
    return dist, direction, relrot


class InvariantPointAttention(nn.Module):
    """IPA (AlphaFold 2, Algorithm 22) without pair updates; frames are fixed within the network."""

    def __init__(self, cfg: FrameNetConfig) -> None:
        super().__init__()
        h, c, pq, pv = cfg.heads, cfg.head_dim, cfg.query_points, cfg.value_points
        self.h, self.c, self.pq, self.pv = h, c, pq, pv
        self.qkv = nn.Linear(cfg.hidden, 3 * h * c, bias=False)
        self.qk_points = nn.Linear(cfg.hidden, 2 * h * pq * 3)
        self.v_points = nn.Linear(cfg.hidden, h * pv * 3)
        self.pair_bias = nn.Linear(cfg.pair, h, bias=False)
        self.head_weights = nn.Parameter(torch.full((h,), math.log(math.e - 1)))  # softplus -> 1
        self.out = nn.Linear(h * (c + cfg.pair + pv * 4), cfg.hidden)
        self.w_c = math.sqrt(2.0 / (9.0 * pq))
        self.w_l = math.sqrt(1.0 / 3.0)

    def forward(self, s: torch.Tensor, z: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """``s [B, L, hidden]``, ``z [B, L, L, pair]`` -> update of ``s`` ``[B, L, hidden]``."""
        b, n, _ = s.shape
        h, c, pq, pv = self.h, self.c, self.pq, self.pv
        q, k, v = self.qkv(s).view(b, n, 3, h, c).unbind(2)

        def to_global(p: torch.Tensor) -> torch.Tensor:  # [B, L, ..., 3] local -> global
            shape = p.shape
            p = p.reshape(b, n, -1, 3)
            g = torch.einsum("bnij,bnpj->bnpi", rots, p) + trans.unsqueeze(2)
            return g.reshape(shape)

        qp, kp = to_global(self.qk_points(s).view(b, n, 2, h, pq, 3)).unbind(2)
        vp = to_global(self.v_points(s).view(b, n, h, pv, 3))
        logits = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(c)
        logits = logits + self.pair_bias(z).permute(0, 3, 1, 2)
        # squared point distances sum_p |qp_i - kp_j|^2 as |q|^2 + |k|^2 - 2 q.k (one batched matmul)
        qf = qp.permute(0, 2, 1, 3, 4).reshape(b, h, n, pq * 3)
        kf = kp.permute(0, 2, 1, 3, 4).reshape(b, h, n, pq * 3)
        d2 = (qf.pow(2).sum(-1).unsqueeze(-1) + kf.pow(2).sum(-1).unsqueeze(-2)
              - 2 * qf @ kf.transpose(-1, -2)).clamp_min(0)  # [B, h, i, j]
        gamma = nn.functional.softplus(self.head_weights)
        logits = self.w_l * (logits - 0.5 * self.w_c * gamma.view(1, h, 1, 1) * d2)
        pair_mask = mask.unsqueeze(1) & mask.unsqueeze(2)
        logits = logits.masked_fill(~pair_mask.unsqueeze(1), -1e9)
        a = torch.softmax(logits, dim=-1)  # [B, h, i, j]
        o_s = torch.einsum("bhij,bjhc->bihc", a, v).reshape(b, n, h * c)
        o_z = torch.einsum("bhij,bijc->bihc", a, z).reshape(b, n, -1)
        o_p = torch.einsum("bhij,bjhpx->bihpx", a, vp) - trans[:, :, None, None, :]
        o_p = torch.einsum("bnji,bnhpj->bnhpi", rots, o_p)  # back to the local frame
        o_norm = (o_p.pow(2).sum(-1) + 1e-8).sqrt()
        feats = torch.cat([o_s, o_z, o_p.reshape(b, n, -1), o_norm.reshape(b, n, -1)], dim=-1)
        return self.out(feats)


class Transition(nn.Module):
    """Residue-wise MLP with a residual connection and layer norm."""

    def __init__(self, dim: int, factor: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, factor * dim), nn.SiLU(), nn.Linear(factor * dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.norm(s + self.net(s))


class FrameNet(nn.Module):
    """IPA-style vector field on residue frames (see the module docstring)."""

    def __init__(self, config: FrameNetConfig = FrameNetConfig()) -> None:
        super().__init__()
        cfg = self.config = config
        self.node_in = nn.Sequential(nn.Linear(cfg.time_dim, cfg.hidden), nn.SiLU(),
                                     nn.Linear(cfg.hidden, cfg.hidden))
        self.n_term = nn.Embedding(cfg.termini + 1, cfg.hidden)
        self.c_term = nn.Embedding(cfg.termini + 1, cfg.hidden)
        self.offset_embed = nn.Embedding(2 * cfg.max_offset + 2, cfg.pair)
        self.pair_geom = nn.Linear(cfg.rbf + 1 + 3 + 9, cfg.pair)
        self.pair_time = nn.Linear(cfg.time_dim, cfg.pair)
        self.pair_mlp = nn.Sequential(nn.SiLU(), nn.Linear(cfg.pair, cfg.pair))
        self.pair_norm = nn.LayerNorm(cfg.pair)
        if cfg.self_condition:  # RBF of the previous prediction's CA distances + a "given" flag
            self.sc_pair = nn.Linear(cfg.rbf + 1, cfg.pair, bias=False)
            nn.init.zeros_(self.sc_pair.weight)
        self.ipa = nn.ModuleList(InvariantPointAttention(cfg) for _ in range(cfg.layers))
        self.ipa_norm = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers))
        self.transition = nn.ModuleList(Transition(cfg.hidden) for _ in range(cfg.layers))
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, 6))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        if cfg.frame_updates:  # one update after each block but the last (the head gives that one)
            self.updates = nn.ModuleList(nn.Linear(cfg.hidden, 6) for _ in range(cfg.layers - 1))
            for lin in self.updates:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.register_buffer("rbf_centres", torch.linspace(0, cfg.rbf_max, cfg.rbf), persistent=False)

    def rbf(self, dist: torch.Tensor) -> torch.Tensor:
        """``[...] -> [..., rbf]`` Gaussian radial basis of CA distances (nm)."""
        width = self.config.rbf_max / (self.config.rbf - 1)
        return torch.exp(-((dist.unsqueeze(-1) - self.rbf_centres.to(dist)) / width) ** 2)

    def self_condition_features(self, sc_trans: torch.Tensor | None, mask: torch.Tensor,
                                dtype: torch.dtype) -> torch.Tensor:
        """``[B, L, L, pair]``: the embedded CA distances of ``sc_trans [B, L, 3]`` (nm; zero
        without it, computed either way so every parameter takes part under DDP)."""
        b, n = mask.shape
        if sc_trans is None:
            feats = torch.zeros(b, n, n, self.config.rbf + 1, dtype=dtype, device=mask.device)
        else:
            dist = pair_offsets(sc_trans)[1]
            feats = torch.cat([self.rbf(dist), torch.ones_like(dist).unsqueeze(-1)], dim=-1)
        return self.sc_pair(feats)

    def pair_features(self, rots: torch.Tensor, trans: torch.Tensor, mask: torch.Tensor,
                      temb: torch.Tensor, sc_trans: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, L, pair]`` invariant pair features (``sc_trans``: see :meth:`forward`)."""
        cfg = self.config
        b, n = mask.shape
        idx = torch.arange(n, device=mask.device)
        offset = (idx[None, :] - idx[:, None]).clamp(-cfg.max_offset, cfg.max_offset) + cfg.max_offset
        offset = torch.where((idx[None, :] - idx[:, None]).abs() > cfg.max_offset,
                             torch.full_like(offset, 2 * cfg.max_offset + 1), offset)
        dist, direction, relrot = pair_geometry(rots, trans)
        geom = torch.cat([self.rbf(dist), torch.log1p(dist).unsqueeze(-1), direction, relrot], dim=-1)
        z = self.pair_geom(geom) + self.offset_embed(offset) + self.pair_time(temb)[:, None, None, :]
        if cfg.self_condition:
            z = z + self.self_condition_features(sc_trans, mask, trans.dtype)
        return self.pair_norm(z + self.pair_mlp(z))

    def forward(self, rots: torch.Tensor, trans: torch.Tensor, t: torch.Tensor,
                mask: torch.Tensor, sc_trans: torch.Tensor | None = None) -> FrameNetOutput:
        """Predict frame updates.

        Args:
            rots: ``[B, L, 3, 3]``; trans: ``[B, L, 3]`` (nm); t: ``[B]`` in [0, 1];
            mask: ``[B, L]`` bool of real residues (padding is ignored and gets zero updates);
            sc_trans: ``[B, L, 3]`` a previous prediction of the clean CA positions (nm), used
                only by a network built with ``self_condition`` (only its distances enter).
        """
        cfg = self.config
        b, n = mask.shape
        temb = sinusoidal(1000.0 * t, cfg.time_dim)
        idx = torch.arange(n, device=mask.device)
        from_c = (mask.sum(-1, keepdim=True) - 1 - idx).clamp(0, cfg.termini)  # [B, L]
        s = (self.node_in(temb)[:, None] + self.n_term(idx.clamp(max=cfg.termini))[None]
             + self.c_term(from_c))
        z = self.pair_features(rots, trans, mask, temb, sc_trans)
        m = mask.unsqueeze(-1).to(trans.dtype)
        if not cfg.frame_updates:
            for ipa, norm, trans_block in zip(self.ipa, self.ipa_norm, self.transition):
                s = trans_block(norm(s + ipa(s, z, rots, trans, mask)))
            s = s * m
            out = self.head(s) * m
            return FrameNetOutput(rot=out[..., :3], trans=out[..., 3:], features=s)
        # the update relative to the input frame: rotation q_rel and translation t_rel (input frame)
        q_rel = torch.zeros(b, n, 4, dtype=trans.dtype, device=trans.device)
        q_rel[..., 0] = 1.0
        t_rel = torch.zeros_like(trans)
        cur_rots, cur_trans = rots, trans
        for k, (ipa, norm, trans_block) in enumerate(zip(self.ipa, self.ipa_norm, self.transition)):
            s = trans_block(norm(s + ipa(s, z, cur_rots, cur_trans, mask)))
            upd = (self.updates[k](s) if k < cfg.layers - 1 else self.head(s)) * m
            rel = quaternion_to_matrix(q_rel)
            t_rel = t_rel + torch.einsum("blij,blj->bli", rel, upd[..., 3:])
            q_rel = quaternion_multiply(q_rel, axis_angle_to_quaternion(upd[..., :3]))
            q_rel = q_rel / q_rel.norm(dim=-1, keepdim=True)
            # like AlphaFold, later blocks see the updated frames without rotation gradients
            cur_rots = rots @ quaternion_to_matrix(q_rel).detach()
            cur_trans = trans + torch.einsum("blij,blj->bli", rots, t_rel)
        s = s * m
        return FrameNetOutput(rot=quaternion_log(q_rel) * m, trans=t_rel * m, features=s)
