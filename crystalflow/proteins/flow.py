"""SE(3) flow matching on residue frames (FrameFlow-style), on the package's shared core.

Fields: ``rots`` on :class:`~crystalflow.manifolds.so3.SO3` (uniform prior) and ``trans`` on
``Euclidean(3)`` (CA positions in nanometres, i.e. Angstrom / ``trans_scale``, with a centred
standard normal prior). Paths are the shared :class:`~crystalflow.paths.GeodesicPath` per field
in a :class:`~crystalflow.paths.ProductPath`; the loss is :func:`~crystalflow.losses.cfm_loss`;
sampling uses :func:`~crystalflow.solvers.integrate`.

Parametrisation: the network predicts the clean frames ``x1_hat = x_t . (Exp(rot), trans)`` (in
each residue's local frame); the velocity is then ``log_{x_t}(x1_hat) / (1 - t)``, which for
the geodesic path equals the conditional target ``log_{x0}(x1)`` when ``x1_hat = x1``. For the
loss both predicted and target velocities are multiplied by ``(1 - t) / max(1 - t, min_scale)``
so the weight ``1 / (1 - t)^2`` stays bounded near t = 1 (FrameFlow's clipping).

Self-conditioning: with a network built with ``self_condition``
(:class:`~crystalflow.models.framenet.FrameNetConfig`) every sampling step passes the previous
step's predicted clean CA positions to the network, and training does so on a fraction of the
batches with a first, gradient-free prediction at the same ``x_t`` (FrameDiff / FrameFlow).

Optional alignment (``align_prior``): the prior translations are rotated onto the data by Kabsch
(and the prior rotations with them), which leaves the prior's law unchanged for an isotropic data
distribution (the network is equivariant) and shortens the paths. Optional auxiliary loss
(``aux_weight``): the ideal backbone atoms of ``x1_hat`` against those of ``x1`` plus local
pairwise atom distances, for ``t > aux_t_min`` (FrameFlow's late-time auxiliary loss).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from crystalflow.errors import InputError
from crystalflow.losses import LossOutput, cfm_loss
from crystalflow.manifolds import Euclidean
from crystalflow.manifolds.so3 import SO3, so3_exp
from crystalflow.paths import GeodesicPath, ProductPath, sample_times
from crystalflow.proteins.dataset import BackboneBatch
from crystalflow.proteins.frames import atoms_from_frames, centre, kabsch_rotation
from crystalflow.proteins.guidance import CLASH_RADIUS, clash_energy, relax_clashes
from crystalflow.solvers import integrate


@dataclass(frozen=True)
class BackboneFlowConfig:
    """Units, loss weights and sampling defaults of :class:`BackboneFlow`.

    Attributes:
        trans_scale: Angstrom per flow unit of translation (10: nanometres).
        rot_weight / trans_weight: CFM loss weights of the two fields.
        min_scale: lower clip of ``1 - t`` in the loss scaling.
        t_late_fraction / t_late_min: training times are drawn from ``U(t_late_min, 1)`` for this
            fraction of chains and from ``U(0, 1)`` otherwise (more samples where the final
            local geometry is decided).
        align_prior: Kabsch-align prior translations (and rotations) to the data.
        aux_weight / aux_t_min / aux_cutoff: auxiliary atom loss weight, the time above which it
            applies and the distance cutoff (Angstrom) of its pairwise-distance term.
        aux_pred_pairs: the pairwise-distance term also covers atom pairs that are within the
            cutoff in the prediction (not only in the data), so predicted clashes between atoms
            that are far apart in the data are penalised too.
        clash_weight / clash_t_min: weight of a steric loss on the predicted clean CA positions
            for chains with ``t >= clash_t_min`` (0: off): :func:`~crystalflow.proteins.guidance.
            clash_energy` without its bond term (non-adjacent CA pairs closer than
            ``CLASH_RADIUS``), per residue, in Angstrom^2, not scaled by ``1 / (1 - t)^2``. The
            auxiliary loss acts near the data end; this one also where the estimate is still
            blurred and the sampler's clashes form.
        self_condition_prob: for a network built with ``self_condition``: the fraction of
            training batches whose network call gets the (gradient-free) prediction of a first
            call at the same ``x_t`` (FrameFlow's 0.5); sampling always passes the previous
            step's prediction.
        steps / method / rot_anti_annealing: sampling defaults (the last scales the rotation
            velocity by ``1 + s t``, see :func:`crystalflow.solvers.anneal`).
        clash_guidance / clash_guidance_t_min / clash_guidance_radius: sampling: gradient steps of
            :func:`~crystalflow.proteins.guidance.relax_clashes` on the predicted clean CA
            positions at every step with ``t >= clash_guidance_t_min`` (0: off), repelling
            non-adjacent CA pairs closer than ``clash_guidance_radius`` (Angstrom; the default
            is the potential's original 4 A, the bundled checkpoint stores its own).
        clash_guidance_bond_weight: weight of that potential's consecutive CA-CA term.
        min_length / max_length: supported chain lengths for sampling.
    """

    trans_scale: float = 10.0
    rot_weight: float = 0.5
    trans_weight: float = 1.0
    min_scale: float = 0.1
    align_prior: bool = True
    aux_weight: float = 0.0
    aux_t_min: float = 0.75
    aux_cutoff: float = 6.0
    aux_pred_pairs: bool = False
    clash_weight: float = 0.0
    clash_t_min: float = 0.25
    self_condition_prob: float = 0.5
    t_late_fraction: float = 0.0
    t_late_min: float = 0.8
    steps: int = 100
    method: str = "euler"
    rot_anti_annealing: float = 0.0
    clash_guidance: int = 0
    clash_guidance_t_min: float = 0.5
    clash_guidance_radius: float = CLASH_RADIUS
    clash_guidance_bond_weight: float = 1.0
    min_length: int = 16
    max_length: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Frames:
    """A batch of residue frames in flow units.

    Attributes:
        rots: ``[B, L, 3, 3]``; trans: ``[B, L, 3]`` (nm, centred); mask: ``[B, L]`` bool.
    """

    rots: torch.Tensor
    trans: torch.Tensor
    mask: torch.Tensor


class BackboneFlow:
    """Flow matching over ``rots`` (SO(3)) and ``trans`` (R^3) per residue.

    Args:
        model: ``model(rots, trans, t, mask) -> FrameNetOutput`` (see
            :class:`crystalflow.models.framenet.FrameNet`).
        config: units, loss weights and sampling defaults.
    """

    manifolds = {"rots": SO3(), "trans": Euclidean(3)}

    def __init__(self, model: nn.Module, config: BackboneFlowConfig = BackboneFlowConfig()) -> None:
        self.model = model
        self.config = config
        #: the network embeds a previous prediction (fixed at construction: ``model`` may be
        #: wrapped for data-parallel training later)
        self.self_conditioned = bool(getattr(getattr(model, "config", None), "self_condition", False))
        self.path = ProductPath({k: GeodesicPath(m) for k, m in self.manifolds.items()})

    # ----------------------------------------------------------------- prior and data
    def prior(self, mask: torch.Tensor, dtype: torch.dtype = torch.float32,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``x0``: uniform rotations ``[B, L, 3, 3]`` and centred N(0, I) translations ``[B, L, 3]``.

        The noise is drawn on the generator's device (the mask's without one) and moved to the
        mask's device, so a CPU generator gives the same samples on any device.
        """
        dev = generator.device if generator is not None else mask.device
        rots = self.manifolds["rots"].random_uniform(tuple(mask.shape), generator, dtype, dev).to(mask.device)
        trans = torch.randn(mask.shape + (3,), generator=generator, dtype=dtype, device=dev).to(mask.device)
        eye = torch.eye(3, dtype=dtype, device=mask.device)
        rots = torch.where(mask[..., None, None], rots, eye)
        return {"rots": rots, "trans": centre(trans, mask)}

    def targets(self, batch: BackboneBatch) -> dict[str, torch.Tensor]:
        """``x1``: the data's frames in flow units."""
        return {"rots": batch.rots, "trans": batch.trans / self.config.trans_scale}

    # ----------------------------------------------------------------- network -> velocity
    def predict(self, x: dict[str, torch.Tensor], t: torch.Tensor, mask: torch.Tensor,
                sc_trans: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Run the network at ``x_t`` (``sc_trans [B, L, 3]``: a previous prediction of the
        clean translations, for a self-conditioned network).

        Returns:
            ``(updates, x1_hat)``: updates ``rots [B, L, 3]`` (body-frame axis-angle, equal to
            ``log_{x_t}(x1_hat)``) and ``trans [B, L, 3]`` (global, nm, ``x1_hat - x_t``);
            ``x1_hat`` the predicted clean frames.
        """
        if sc_trans is not None and self.self_conditioned:
            out = self.model(x["rots"], x["trans"], t, mask, sc_trans=sc_trans)
        else:
            out = self.model(x["rots"], x["trans"], t, mask)
        d_trans = torch.einsum("blij,blj->bli", x["rots"], out.trans)
        d_trans = centre(d_trans, mask)
        x1_hat = {"rots": x["rots"] @ so3_exp(out.rot), "trans": x["trans"] + d_trans}
        return {"rots": out.rot, "trans": d_trans}, x1_hat

    def velocity(self, x: dict[str, torch.Tensor], t: torch.Tensor, mask: torch.Tensor,
                 clash_guidance: int = 0, sc_trans: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``log_{x_t}(x1_hat) / (1 - t)`` per field; ``t`` ``[B]`` below 1.

        With ``clash_guidance`` > 0 (and ``t >= clash_guidance_t_min``) the predicted clean CA
        positions are first relaxed by that many steps of
        :func:`~crystalflow.proteins.guidance.relax_clashes`.
        """
        return self.velocity_and_estimate(x, t, mask, clash_guidance, sc_trans)[0]

    def velocity_and_estimate(self, x: dict[str, torch.Tensor], t: torch.Tensor, mask: torch.Tensor,
                              clash_guidance: int = 0, sc_trans: torch.Tensor | None = None,
                              clash_radius: float | None = None,
                              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """:meth:`velocity` and the network's own clean-frame estimate ``x1_hat`` (before any
        clash guidance), which the sampler passes back as the next step's ``sc_trans``.
        ``clash_radius`` (Angstrom) defaults to the config's ``clash_guidance_radius``."""
        upd, x1_hat = self.predict(x, t, mask, sc_trans)
        cfg = self.config
        if clash_guidance > 0 and float(t.min()) >= cfg.clash_guidance_t_min:
            s = cfg.trans_scale
            radius = cfg.clash_guidance_radius if clash_radius is None else clash_radius
            fixed = relax_clashes(x1_hat["trans"] * s, mask, clash_guidance, radius=radius,
                                  bond_weight=cfg.clash_guidance_bond_weight) / s
            upd = {"rots": upd["rots"], "trans": centre(fixed - x["trans"], mask)}
        scale = 1.0 / (1.0 - t).clamp_min(1e-4)
        return {k: u * scale[:, None, None] for k, u in upd.items()}, x1_hat

    # ----------------------------------------------------------------- training
    def loss(self, batch: BackboneBatch, generator: torch.Generator | None = None) -> LossOutput:
        """CFM loss on one batch (t ~ U(0, 1) per chain), plus the optional auxiliary atom loss."""
        cfg = self.config
        mask = batch.mask
        x1 = self.targets(batch)
        x0 = self.prior(mask, x1["trans"].dtype, generator)
        if cfg.align_prior:
            q = kabsch_rotation(x0["trans"], x1["trans"], mask)
            x0 = {"rots": q[:, None] @ x0["rots"], "trans": torch.einsum("bij,blj->bli", q, x0["trans"])}
        b, n = mask.shape
        t = self.sample_times(b, x1["trans"].dtype, generator, mask.device)
        tt = t[:, None].expand(b, n).reshape(-1)  # the path works on flat [M, ...] arrays
        ps = self.path.sample({k: _flat(v) for k, v in x0.items()},
                              {k: _flat(v) for k, v in x1.items()}, {"rots": tt, "trans": tt})
        x_t = {k: p.x_t.reshape(x1[k].shape) for k, p in ps.items()}
        dx_t = {k: p.dx_t.reshape(b, n, 3) for k, p in ps.items()}
        upd, x1_hat = self.predict(x_t, t, mask, self.self_condition_input(x_t, t, mask, generator))
        one_minus = 1.0 - t
        w = (1.0 / one_minus.clamp_min(cfg.min_scale))[:, None, None]
        pred = {k: (u * w)[mask] for k, u in upd.items()}
        target = {k: (dx_t[k] * (one_minus[:, None, None] * w))[mask] for k in upd}
        points = {k: v[mask] for k, v in x_t.items()}
        out = cfm_loss(pred, target, points, self.manifolds,
                       {"rots": cfg.rot_weight, "trans": cfg.trans_weight})
        total, parts = out.total, dict(out.parts)
        if cfg.aux_weight > 0:
            aux = self.aux_loss(x1_hat, x1, mask, t)
            total, parts["aux"] = total + cfg.aux_weight * aux, float(aux.detach())
        if cfg.clash_weight > 0:
            clash = self.clash_loss(x1_hat, mask, t)
            total, parts["clash"] = total + cfg.clash_weight * clash, float(clash.detach())
        return LossOutput(total=total, parts=parts)

    def clash_loss(self, x1_hat: dict[str, torch.Tensor], mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean over chains with ``t >= clash_t_min`` (zero for the others) of the steric energy
        per residue (Angstrom^2) of the predicted clean CA positions. ``x1_hat["trans"] [B, L, 3]``
        (nm), ``mask [B, L]``, ``t [B]``; returns a scalar."""
        cfg = self.config
        on = (t >= cfg.clash_t_min).to(t.dtype)  # [B]
        energy = clash_energy(x1_hat["trans"] * cfg.trans_scale, mask, bond_weight=0.0)  # [B]
        return (energy / mask.sum(-1).clamp_min(1) * on).mean()

    def self_condition_input(self, x_t: dict[str, torch.Tensor], t: torch.Tensor, mask: torch.Tensor,
                             generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Training: for a self-conditioned network, with probability ``self_condition_prob``
        (one draw per batch, from ``generator``) a gradient-free first prediction's clean
        translations ``[B, L, 3]``; otherwise None. Draws nothing for other networks."""
        if not self.self_conditioned:
            return None
        dev = generator.device if generator is not None else mask.device
        if float(torch.rand((), generator=generator, device=dev)) >= self.config.self_condition_prob:
            return None
        with torch.no_grad():
            return self.predict(x_t, t, mask)[1]["trans"].detach()

    def sample_times(self, n: int, dtype: torch.dtype = torch.float32,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """``[n]`` training times on ``device``: ``U(0, 1)``, or ``U(t_late_min, 1)`` with
        probability ``t_late_fraction`` (:func:`crystalflow.paths.sample_times`)."""
        return sample_times(n, late_fraction=self.config.t_late_fraction, late_min=self.config.t_late_min,
                            dtype=dtype, generator=generator, device=device)

    def aux_loss(self, x1_hat: dict[str, torch.Tensor], x1: dict[str, torch.Tensor],
                 mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Backbone-atom MSE plus local pairwise-distance MSE (nm^2) for ``t > aux_t_min``.

        Pairs enter the distance term when they are within ``aux_cutoff`` in the data (FrameDiff's
        2D loss) or, with ``aux_pred_pairs``, in the prediction. ``x1_hat`` / ``x1``: ``rots
        [B, L, 3, 3]``, ``trans [B, L, 3]`` (nm); ``mask [B, L]``; ``t [B]``; returns a scalar.

        Like the velocity loss, each chain's term is weighted by ``1 / max(1 - t, min_scale)^2``
        (FrameFlow scales its auxiliary losses the same way), so it acts where the velocity
        ``(x1_hat - x_t) / (1 - t)`` is most sensitive to errors of ``x1_hat``.
        """
        cfg = self.config
        late = (t > cfg.aux_t_min).to(t.dtype) / (1.0 - t).clamp_min(cfg.min_scale) ** 2  # [B]
        if late.sum() == 0:
            return torch.zeros((), dtype=t.dtype, device=t.device)
        pa = atoms_from_frames(x1_hat["rots"], x1_hat["trans"] * cfg.trans_scale, mask) / cfg.trans_scale
        ta = atoms_from_frames(x1["rots"], x1["trans"] * cfg.trans_scale, mask) / cfg.trans_scale
        m = mask.to(t.dtype)
        atom_se = ((pa - ta).pow(2).sum(-1).mean(-1) * m).sum(-1) / m.sum(-1)  # [B]
        b = mask.shape[0]
        pa, ta = pa.reshape(b, -1, 3), ta.reshape(b, -1, 3)
        am = m.repeat_interleave(4, dim=1)
        pd, td = torch.cdist(pa, pa), torch.cdist(ta, ta)
        near = td < cfg.aux_cutoff / cfg.trans_scale
        if cfg.aux_pred_pairs:
            near = near | (pd.detach() < cfg.aux_cutoff / cfg.trans_scale)
        pm = am[:, :, None] * am[:, None, :] * near.to(t.dtype)
        dist_se = ((pd - td).pow(2) * pm).sum((-1, -2)) / pm.sum((-1, -2)).clamp_min(1)
        return ((atom_se + dist_se) * late).mean()

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, lengths: list[int], *, steps: int | None = None, method: str | None = None,
               rot_anti_annealing: float | None = None, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32, clash_guidance: int | None = None,
               self_condition: bool = True, clash_radius: float | None = None) -> Frames:
        """Integrate the learned flow from the prior for chains of the given lengths.

        ``steps``, ``method``, ``rot_anti_annealing``, ``clash_guidance`` and ``clash_radius``
        (the guidance's repulsion radius) default to the config's. ``self_condition=False``
        never passes the previous estimate to a self-conditioned network (an ablation; no effect
        on other networks).

        Returns:
            :class:`Frames` with translations in nm (multiply by ``trans_scale`` for Angstrom).

        Raises:
            InputError: a length outside ``[min_length, max_length]``.
        """
        cfg = self.config
        check_lengths(lengths, cfg.min_length, cfg.max_length)
        n = max(lengths)
        device = next(self.model.parameters(), torch.empty(0)).device
        mask = torch.arange(n, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
        x0 = self.prior(mask, dtype, generator)
        slope = cfg.rot_anti_annealing if rot_anti_annealing is None else rot_anti_annealing
        guide = cfg.clash_guidance if clash_guidance is None else clash_guidance

        previous: torch.Tensor | None = None  # the last clean CA estimate (self-conditioning)

        def velocity(x: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
            nonlocal previous
            v, x1_hat = self.velocity_and_estimate(x, t.expand(len(lengths)), mask, guide, previous,
                                                   clash_radius)
            if self.self_conditioned and self_condition:
                previous = x1_hat["trans"]
            return v

        x1 = integrate(velocity, x0, self.manifolds, steps or cfg.steps, method or cfg.method,
                       anti_annealing={"rots": slope} if slope else None, time_dtype=dtype)
        return Frames(rots=x1["rots"], trans=centre(x1["trans"], mask), mask=mask)

    def backbones(self, frames: Frames) -> list[torch.Tensor]:
        """Ideal backbone atoms ``[L_i, 4, 3]`` (Angstrom) of each sampled chain."""
        atoms = atoms_from_frames(frames.rots, frames.trans * self.config.trans_scale, frames.mask)
        return [atoms[i, : int(frames.mask[i].sum())] for i in range(frames.mask.shape[0])]


def _flat(v: torch.Tensor) -> torch.Tensor:
    """``[B, L, *shape] -> [B * L, *shape]``."""
    return v.reshape((-1,) + tuple(v.shape[2:]))


def check_lengths(lengths: list[int], min_length: int, max_length: int) -> None:
    """Raise :class:`InputError` unless every length lies in ``[min_length, max_length]``."""
    if not lengths:
        raise InputError("no chains requested (need at least one length)")
    bad = [n for n in lengths if not min_length <= int(n) <= max_length]
    if bad:
        raise InputError(f"chain length {bad[0]} outside the supported range "
                         f"{min_length}-{max_length} residues")
