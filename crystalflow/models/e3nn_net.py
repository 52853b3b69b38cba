"""An E(3)-equivariant vector field for crystals built from e3nn irreps (NequIP / MACE style).

The network sees the crystal as a periodic point cloud in Cartesian space: the lattice chart
coordinates ``z`` are turned back into a row-vector lattice matrix ``L`` (through the
:class:`~crystalflow.manifolds.LatticeChart` the flow was fitted with, kept as buffers so a
checkpoint carries it), a periodic radius graph with lattice image offsets is built
(:func:`~crystalflow.crystals.neighbors.periodic_radius_graph`), and ``layers`` rounds of
tensor-product message passing act on spherical harmonics of the Cartesian edge vectors, with a
radial MLP on a Bessel basis and gated nonlinearities. Outputs:

* ``cart [N, 3]``: an ``l = 1`` (odd) vector per atom, rotating with the frame;
* ``frac [N, 3] = cart @ L^{-1}``: the fractional velocity (rows-as-vectors convention), invariant
  under rotations ``L -> L R^T`` and transformed by ``M^{-1}`` under a change of basis ``L -> M L``;
* ``lattice [B, 6]``: the chart velocity, from rotation-invariant scalars (pooled node scalars,
  the chart coordinates and the time).

Neighbourhoods. MP-20 cells can be small and, at early flow times, random, so a fixed cutoff either
leaves atoms without neighbours or floods small dense cells. The cutoff of crystal ``b`` scales with
its volume per atom, ``r_b = cutoff_factor * (V_b / N_b)^{1/3}`` (about ``4/3 pi cutoff_factor^3``
neighbours on average whatever the density), and each centre atom ``i`` additionally gets
``r_i = max(r_b, min(guard * d_i, R_b))`` with ``d_i`` its nearest-neighbour distance (own images
included) and ``R_b = 1.1225 V_b^{1/3}``. Since an atom's own images lie at the shortest lattice
vector, which is at most ``sqrt(gamma_3) V^{1/3} = 1.1225 V^{1/3}`` (Hermite's constant), every atom
always has at least one neighbour. All these radii are functions of distances and the volume only,
hence invariant under rotations, permutations and changes of unit cell, and continuous (a smooth
polynomial envelope on ``d / r_i`` makes edges enter and leave the graph with zero weight).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn
from torch_geometric.utils import scatter

from crystalflow.crystals.crystal import MAX_ATOMIC_NUM
from crystalflow.crystals.lattice import lattice_matrix_to_params, lattice_params_to_matrix
from crystalflow.crystals.neighbors import PeriodicGraph, periodic_radius_graph
from crystalflow.manifolds.lattice import params_to_unconstrained, unconstrained_to_params
from crystalflow.models.conditions import Conditions
from crystalflow.models.cspnet import sinusoidal_time

#: Hermite's constant bound: the shortest vector of a 3D lattice is at most this times V^(1/3)
HERMITE3 = 2.0 ** (1.0 / 6.0)


@dataclass(frozen=True)
class E3NNConfig:
    """Size of :class:`E3NNNet`.

    Attributes:
        hidden: scalar (``0e``) channels per atom.
        layers: message-passing rounds.
        vectors: channels of each of ``1o`` and ``1e`` (default ``hidden // 4``).
        lmax: largest degree of the edge spherical harmonics.
        radial_basis: Bessel functions of ``d / r_i``.
        radial_hidden: width of the radial MLP.
        cutoff_factor: ``r_b = cutoff_factor * (V / N)^{1/3}``.
        guard: ``r_i >= guard * d_i`` (nearest-neighbour distance), so no atom is isolated.
        time_dim: sinusoidal time features.
        cond_dim: must be 0 (kept for CLI/config symmetry with CSPNet).
    """

    hidden: int = 64
    layers: int = 3
    vectors: int | None = None
    lmax: int = 2
    radial_basis: int = 8
    radial_hidden: int = 32
    cutoff_factor: float = 1.6
    guard: float = 1.5
    time_dim: int = 32
    cond_dim: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def vector_channels(self) -> int:
        return self.vectors if self.vectors is not None else max(1, self.hidden // 4)

    @property
    def mean_neighbours(self) -> float:
        """Expected neighbours per atom at uniform density (aggregation normaliser)."""
        return 4.0 / 3.0 * math.pi * self.cutoff_factor ** 3


@dataclass(frozen=True)
class E3NNOutput:
    """Velocities of the equivariant field.

    Attributes:
        cart: ``[N, 3]`` Cartesian velocity of each atom (Angstrom per unit time).
        frac: ``[N, 3]`` fractional velocity ``cart @ L^{-1}``.
        lattice: ``[B, 6]`` velocity of the lattice chart coordinates.
        pooled: ``[B, hidden]`` mean of the final invariant node scalars (what the lattice head
            sees besides the chart coordinates and the time).
    """

    cart: torch.Tensor
    frac: torch.Tensor
    lattice: torch.Tensor
    pooled: torch.Tensor


def polynomial_envelope(x: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Smooth cutoff ``u(x)`` on ``x = d / r``: 1 at 0, 0 with two vanishing derivatives at 1."""
    u = (1 - (p + 1) * (p + 2) / 2 * x ** p + p * (p + 2) * x ** (p + 1)
         - p * (p + 1) / 2 * x ** (p + 2))
    return torch.where(x < 1, u, torch.zeros_like(u))


def bessel_basis(x: torch.Tensor, number: int) -> torch.Tensor:
    """``[E] -> [E, number]``: ``sqrt(2) sin(k pi x) / x`` for ``k = 1..number`` (x = d / r)."""
    k = torch.arange(1, number + 1, device=x.device, dtype=x.dtype)
    return math.sqrt(2.0) * torch.sin(k * math.pi * x[:, None]) / x[:, None]


#: smallest ``V / (a b c)`` the network accepts (a cube has 1, every MP-20 training cell >= 0.707)
MIN_VOLUME_RATIO = 0.35


def volume_ratio(params: torch.Tensor) -> torch.Tensor:
    """``[..., 6] -> [...]``: ``V / (a b c)`` from the angles (0 for angle triples that are no cell)."""
    c = torch.cos(torch.deg2rad(params[..., 3:]))
    radicand = 1 - (c * c).sum(-1) + 2 * c.prod(-1)
    return radicand.clamp_min(0).sqrt()


def repair_angles(params: torch.Tensor, min_ratio: float = MIN_VOLUME_RATIO, grid: int = 21) -> torch.Tensor:
    """Pull the angles of (nearly) degenerate parameter sets towards 90 degrees.

    Args:
        params: ``[B, 6]`` lattice parameters.
        min_ratio: required ``V / (a b c)``.
        grid: number of shrink factors ``s`` tried in ``[1, 0]`` (``s = 0`` is rectangular).

    Returns:
        ``[B, 6]`` with angles ``90 + s (angles - 90)`` for the largest tried ``s`` that reaches
        ``min_ratio`` (``s = 1``, i.e. unchanged, for every proper cell of that ratio).
    """
    s = torch.linspace(1.0, 0.0, grid, dtype=params.dtype, device=params.device)  # [S]
    angles = 90 + s[:, None, None] * (params[None, :, 3:] - 90)  # [S, B, 3]
    ok = volume_ratio(torch.cat([params[None, :, :3].expand(grid, -1, -1), angles], -1)) >= min_ratio
    first = torch.argmax(ok.to(torch.int8), dim=0)  # [B] largest s that is fine (s = 0 always is)
    chosen = angles.gather(0, first[None, :, None].expand(1, -1, 3))[0]
    return torch.cat([params[:, :3], chosen], -1)


def adaptive_radius_graph(
    frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, num_atoms: torch.Tensor,
    cutoff_factor: float, guard: float,
) -> tuple[PeriodicGraph, torch.Tensor]:
    """The periodic graph with per-centre radii described in the module docstring.

    Args:
        frac: ``[N, 3]``; lattice: ``[B, 3, 3]`` rows are lattice vectors; batch ``[N]``;
        num_atoms ``[B]``; cutoff_factor, guard: see :class:`E3NNConfig`.

    Returns:
        ``(graph, radius)``: the edges with ``|v| < r_i`` of their centre ``i = dst`` and the
        ``[E]`` radius of each edge's centre.
    """
    volume = torch.linalg.det(lattice).abs()  # [B]
    r_b = cutoff_factor * (volume / num_atoms.to(volume)) ** (1.0 / 3.0)
    big = torch.maximum(r_b, HERMITE3 * volume ** (1.0 / 3.0) * (1 + 1e-6))
    # pass 1 (cheap): radius r_b finds d_i wherever d_i < r_b; pass 2 reaches every atom's r_i
    # (R_b only for crystals with an atom that has no neighbour within r_b)
    n = frac.shape[0]
    with torch.no_grad():
        g1 = periodic_radius_graph(frac, lattice, batch, num_atoms, r_b)
        d1 = scatter(g1.lengths, g1.dst, dim=0, dim_size=n, reduce="min")
        found = torch.bincount(g1.dst, minlength=n) > 0
        need = torch.where(found, torch.maximum(r_b[batch], guard * d1), big[batch])
        reach = torch.minimum(scatter(need, batch, dim=0, dim_size=r_b.shape[0], reduce="max"), big)
    g = periodic_radius_graph(frac, lattice, batch, num_atoms, torch.maximum(reach, r_b))
    nearest = scatter(g.lengths, g.dst, dim=0, dim_size=n, reduce="min")  # [N]
    r_i = torch.maximum(r_b[batch], torch.minimum(guard * nearest, big[batch]))
    radius = r_i[g.dst]
    keep = (g.lengths < radius).nonzero(as_tuple=True)[0]
    sub = PeriodicGraph(src=g.src[keep], dst=g.dst[keep], offsets=g.offsets[keep],
                        vectors=g.vectors[keep], lengths=g.lengths[keep], edge_batch=g.edge_batch[keep])
    return sub, radius[keep]


class Interaction(nn.Module):
    """One NequIP-style convolution: ``h_i + gate(lin(sum_j TP(h_j, Y(v_ij); R(d_ij))) + self(h_i))``."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps,
                 radial_in: int, radial_hidden: int, norm: float) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out, self.norm = irreps_in, irreps_out, norm
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e")
        self.gate = Gate(scalars, [torch.nn.functional.silu], gates, [torch.sigmoid], gated)
        targets = set(ir for _, ir in self.gate.irreps_in)
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in targets:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(mid)
        self.lin_in = o3.Linear(irreps_in, irreps_in)
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = FullyConnectedNet([radial_in, radial_hidden, self.tp.weight_numel],
                                        torch.nn.functional.silu)
        self.lin_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps_in, self.gate.irreps_in)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, sh: torch.Tensor,
                radial: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """``h [N, irreps_in.dim] -> [N, irreps_out.dim]`` given edge features of ``E`` edges."""
        x = self.lin_in(h)
        msg = self.tp(x[src], sh, self.radial(radial)) * envelope[:, None]
        agg = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="sum") / math.sqrt(self.norm)
        out = self.gate(self.lin_out(agg) + self.self_connection(h))
        return h + out if self.irreps_in == self.irreps_out else out


class E3NNNet(nn.Module):
    """Vector field ``(x_t, t, cond) -> {frac: [N, 3], lattice: [B, 6]}``, E(3)-equivariant inside.

    The chart that maps ``x_t["lattice"]`` to lattice parameters is held in the buffers
    ``chart_mean`` / ``chart_std``; :class:`~crystalflow.crystal_tasks.csp.CSPFlow` sets them through
    :meth:`use_chart`, and checkpoints restore them with the weights.

    e3nn computes its Clebsch-Gordan constants in the default dtype at construction: for float64
    work to ~1e-15, build the network while the default dtype is float64 (a float32-built network
    cast with ``.double()`` is equivariant to ~1e-9 only).
    """

    def __init__(self, config: E3NNConfig = E3NNConfig()) -> None:
        super().__init__()
        if config.cond_dim:
            raise ValueError("E3NNNet takes no per-atom conditioning features (cond_dim must be 0)")
        self.config = config
        s, v = config.hidden, config.vector_channels
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self.irreps_hidden = o3.Irreps(f"{s}x0e + {v}x1o + {v}x1e")
        self.register_buffer("chart_mean", torch.zeros(6, dtype=torch.float64))
        self.register_buffer("chart_std", torch.ones(6, dtype=torch.float64))
        self.type_embedding = nn.Embedding(MAX_ATOMIC_NUM + 1, s)
        self.time_mlp = nn.Sequential(nn.Linear(config.time_dim, s), nn.SiLU(), nn.Linear(s, s))
        self.input = nn.Sequential(nn.Linear(2 * s + 1, s), nn.SiLU(), nn.Linear(s, s))
        irreps = o3.Irreps(f"{s}x0e")
        layers = []
        for _ in range(config.layers):
            layers.append(Interaction(irreps, self.irreps_hidden, self.irreps_sh, config.radial_basis,
                                      config.radial_hidden, config.mean_neighbours))
            irreps = self.irreps_hidden
        self.layers = nn.ModuleList(layers)
        self.vector_head = o3.Linear(self.irreps_hidden, o3.Irreps("1x1o"))
        self.scalar_out = o3.Linear(self.irreps_hidden, o3.Irreps(f"{s}x0e"))
        self.lattice_head = nn.Sequential(
            nn.Linear(s + 6 + config.time_dim, s), nn.SiLU(), nn.Linear(s, s), nn.SiLU(),
            nn.Linear(s, 6))

    def use_chart(self, chart) -> None:
        """Adopt the lattice chart (``mean``, ``std`` ``[6]``) the flow works in."""
        self.chart_mean.copy_(chart.mean.to(self.chart_mean))
        self.chart_std.copy_(chart.std.to(self.chart_std))

    def chart_to_matrix(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, 6]`` chart coordinates -> ``[B, 3, 3]`` row-vector lattice matrices.

        The chart's angles are independent, so it also holds angle triples that are no cell
        (e.g. three angles near 120 degrees, volume 0); such points are visited between the prior
        and the data. Their angles are pulled towards 90 degrees until ``V / (abc)`` reaches
        :data:`MIN_VOLUME_RATIO` (0.35; every MP-20 training cell has at least 0.707), so the
        network always sees a proper cell. Valid cells are passed unchanged.
        """
        params = unconstrained_to_params(z * self.chart_std.to(z) + self.chart_mean.to(z))
        return lattice_params_to_matrix(repair_angles(params))

    def matrix_to_chart(self, lattice: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 3]`` -> ``[B, 6]`` chart coordinates of its (rotation-invariant) parameters."""
        u = params_to_unconstrained(lattice_matrix_to_params(lattice))
        return (u - self.chart_mean.to(u)) / self.chart_std.to(u)

    def field(self, frac: torch.Tensor, lattice: torch.Tensor, t: torch.Tensor, cond: Conditions,
              z: torch.Tensor | None = None) -> E3NNOutput:
        """The field of crystals given by a Cartesian lattice (any orientation, any cell choice).

        Args:
            frac: ``[N, 3]`` fractional coordinates.
            lattice: ``[B, 3, 3]`` rows are lattice vectors.
            t: ``[B]`` time of each crystal.
            cond: atom types and batch layout.
            z: ``[B, 6]`` chart coordinates of ``lattice`` if known (default: computed from it).
        """
        cfg = self.config
        if z is None:
            z = self.matrix_to_chart(lattice)
        graph, radius = adaptive_radius_graph(frac, lattice, cond.batch, cond.num_atoms,
                                              cfg.cutoff_factor, cfg.guard)
        x = graph.lengths / radius
        sh = o3.spherical_harmonics(self.irreps_sh, graph.vectors, normalize=True,
                                    normalization="component")
        radial = bessel_basis(x, cfg.radial_basis)
        envelope = polynomial_envelope(x)
        temb = sinusoidal_time(t, cfg.time_dim)  # [B, time_dim]
        volume = torch.linalg.det(lattice).abs()
        log_vpa = (volume / cond.num_atoms.to(volume)).log() - math.log(15.0)  # [B]
        h = self.input(torch.cat([self.type_embedding(cond.atom_types),
                                  self.time_mlp(temb)[cond.batch], log_vpa[cond.batch, None]], -1))
        for layer in self.layers:
            h = layer(h, graph.src, graph.dst, sh, radial, envelope)
        cart = self.vector_head(h)  # e3nn >= 0.6 orders l = 1 as (x, y, z)
        frac_v = torch.einsum("nk,nkl->nl", cart, torch.linalg.inv(lattice)[cond.batch])
        pooled = scatter(self.scalar_out(h), cond.batch, dim=0, dim_size=cond.num_atoms.shape[0],
                         reduce="mean")
        lat_v = self.lattice_head(torch.cat([pooled, z, temb], dim=-1))
        return E3NNOutput(cart=cart, frac=frac_v, lattice=lat_v, pooled=pooled)

    def forward(self, x_t: dict[str, torch.Tensor], t: torch.Tensor, cond: Conditions) -> dict[str, torch.Tensor]:
        """Velocities of every field (the signature of :class:`~crystalflow.models.CSPNet`).

        Args:
            x_t: ``frac [N, 3]`` fractional coordinates, ``lattice [B, 6]`` chart coordinates.
            t: ``[B]`` time of each crystal.
            cond: atom types and batch layout.
        """
        z = x_t["lattice"]
        out = self.field(x_t["frac"], self.chart_to_matrix(z), t, cond, z=z)
        return {"frac": out.frac, "lattice": out.lattice}
