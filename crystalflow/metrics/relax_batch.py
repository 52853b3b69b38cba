"""Batched CHGNet relaxation: ASE's FIRE on FrechetCellFilter coordinates, many structures at once.

Why our own: CHGNet's ``StructOptimizer`` (what :func:`crystalflow.metrics.energy.relax` calls)
relaxes one ``ase.Atoms`` at a time, and its calculator asks ``CHGNet.predict_graph`` for forces
and stresses with ``create_graph=True``, so one FIRE step of a 10-atom cell costs ~0.13 s on one
CPU core. torch-sim batches FIRE and wraps CHGNet, but only from version 0.4 on, which needs
Python >= 3.12 (the 0.3 that installs here has no CHGNet model). This is a hot path where the
library lacks batching, so it is implemented here.

What is reproduced, per structure (ASE 3.23+ semantics, checked against ASE 3.29):

* **Degrees of freedom** as ``ase.filters.FrechetCellFilter``: with ``C0`` the starting cell (rows
  are lattice vectors) and ``F`` the deformation gradient (``C = C0 F^T``), the atom rows are the
  undeformed positions ``x = r F^{-T}`` and the three cell rows ``N log F`` (+ const; ``N`` atoms, the
  filter's ``exp_cell_factor``); the state keeps ``L = log F`` directly, so ``F = expm(L)``.
* **Forces on them**: atom rows ``f F``; cell rows ``(1/N) d/dL sum(expm(L) * (W F^{-T}))`` with the
  virial ``W = -V sym(sigma)`` -- the Frechet derivative ASE takes with ``scipy.linalg.expm_frechet``,
  here by autograd through ``torch.linalg.matrix_exp``. ``sigma`` is CHGNet's stress (GPa, its sign
  convention is ASE's) times ``ase.units.GPa``, exactly what ``CHGNetCalculator`` hands ASE.
* **FIRE** with ``ase.optimize.FIRE``'s defaults (dt 0.1, dtmax 1.0, Nmin 5, finc 1.1, fdec 0.5,
  a = astart 0.1, fa 0.99, maxstep 0.2 A on the whole (N + 3) x 3 step), per-structure ``v``,
  ``dt``, ``a`` and ``N_pos`` as batched tensors (vdot and step norm summed per structure).
* **Convergence** as ``Optimizer.run``: the largest row norm of those (N + 3) x 3 forces (atoms
  and scaled cell rows) ``< fmax``, tested before every step; ``steps`` is the FIRE step budget.

Each FIRE step makes ONE batched CHGNet pass over the active structures (energies, forces and
stresses by a single ``torch.autograd.grad``, without CHGNet's ``create_graph=True``). At most
``batch_size`` structures are active; a structure that converges, runs out of steps or fails
leaves the batch and the next waiting one joins, so results do not depend on batch company.
On one CPU thread CHGNet is compute-bound: per structure this is ~1.7x faster than ``relax``
(64 rattled MP-20 crystals, ``scripts/bench_relax.py``), mostly from the single gradient pass;
batching itself adds ~10% there, more on an accelerator.
The :class:`~crystalflow.metrics.energy.Relaxation` records match :func:`~.energy.relax`:
``converged`` is the largest atomic force ``<= fmax`` at the end, ``steps`` the FIRE steps taken.
A cell whose volume per atom is (or becomes) below ``MIN_VOLUME_PER_ATOM``
(:func:`~crystalflow.metrics.energy.collapsed_cell`) leaves with an error record before its
CHGNet graph is built: the graph of a near-flat cell grows without bound.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import torch
from pymatgen.core import Lattice, Structure

from crystalflow.metrics.energy import CHGNET_MODEL, Relaxation, collapsed_cell, load_chgnet

__all__ = ["RELAX_BATCH_SIZE", "relax_batch", "relax_batch_chunk"]

#: structures relaxed together by default: on one CPU thread CHGNet's cost per MP-20 structure is
#: flat from ~4 to 16 (compute-bound; larger batches only add memory); a GPU would want more
RELAX_BATCH_SIZE = 8

# ase.optimize.FIRE defaults (CHGNet's StructOptimizer passes none of them)
_DT, _DTMAX, _NMIN, _FINC, _FDEC, _ASTART, _FA, _MAXSTEP = 0.1, 1.0, 5, 1.1, 0.5, 0.1, 0.99, 0.2
_EV_A3_IN_GPA = 160.21766208  # CHGNet's eV/A^3 -> GPa factor; its inverse is ase.units.GPa
_F64 = torch.float64


def _predict(model: Any, graphs: list[Any]) -> list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One batched CHGNet pass over B crystal graphs.

    Returns:
        Per graph ``(energy eV/atom, forces (n, 3) eV/A, stress (3, 3) GPa, magmoms (n,))``, the
        same numbers as ``CHGNet.predict_graph(task="efsm")`` (to float32 round-off).
    """
    from chgnet.model.model import BatchedGraph

    comp = model.composition_model(graphs) if model.composition_model is not None else 0.0
    with torch.enable_grad():
        bg = BatchedGraph.from_graphs(graphs, bond_basis_expansion=model.bond_basis_expansion,
                                      angle_basis_expansion=model.angle_basis_expansion, compute_stress=True)
        pred = model._compute(bg, compute_magmom=True)  # forces/stress below: one grad, no create_graph
        energy, counts = pred["e"], pred["atoms_per_graph"]  # (B,): eV/atom, CHGNet being intensive
        total = energy * counts if model.is_intensive else energy
        grads = torch.autograd.grad(total.sum(), [*bg.atom_positions, *bg.strains])
    n = len(graphs)
    per_atom = (energy + comp).detach() / (1 if model.is_intensive else counts)
    return [(float(per_atom[i]), -grads[i].detach(), grads[n + i].detach() * _EV_A3_IN_GPA / bg.volumes[i],
             pred["m"][i].detach()) for i in range(n)]


def _predict_each(model: Any, graphs: list[Any]) -> list[tuple | Exception]:
    """:func:`_predict` over the batch, or graph by graph when the batch fails (errors in place)."""
    try:
        return list(_predict(model, graphs))
    except Exception:
        out: list[tuple | Exception] = []
        for g in graphs:
            try:
                out.append(_predict(model, [g])[0])
            except Exception as exc:
                out.append(exc)
        return out


class _FireBatch:
    """FIRE state of the active structures, rows packed: each structure owns ``n_b`` atom rows
    followed by 3 cell rows, contiguous and in slot order (``R = sum_b (n_b + 3)`` rows).

    Attributes:
        x, v: (R, 3) DOFs (undeformed positions; cell rows ``n_b * log F``) and FIRE velocities.
        owner: (R,) slot of each row; cell: (R,) True on cell rows.
        c0: (B, 3, 3) starting cells; n: (B,) atom counts; dt, a: (B,) FIRE time step and mixing;
        n_pos: (B,) FIRE steps since the last uphill step; started: (B,) took a first step;
        taken: (B,) FIRE steps taken; e0: (B,) initial energy per atom (nan before evaluation).
        index, species, inputs: per slot, the caller's index, species and input structure.
    """

    def __init__(self) -> None:
        self.x = torch.zeros(0, 3, dtype=_F64)
        self.v = torch.zeros(0, 3, dtype=_F64)
        self.owner = torch.zeros(0, dtype=torch.long)
        self.cell = torch.zeros(0, dtype=torch.bool)
        self.c0 = torch.zeros(0, 3, 3, dtype=_F64)
        self.n = torch.zeros(0, dtype=torch.long)
        self.dt, self.a, self.e0 = (torch.zeros(0, dtype=_F64) for _ in range(3))
        self.n_pos, self.taken = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        self.started = torch.zeros(0, dtype=torch.bool)
        self.index: list[int] = []
        self.species: list[list] = []
        self.inputs: list[Structure] = []

    def __len__(self) -> int:
        return len(self.index)

    def add(self, i: int, s: Structure) -> None:
        """Append structure ``s`` (caller's index ``i``) at its starting geometry (F = I, v = 0).

        Raises:
            ValueError: ``s`` has no atoms or is disordered (then the state is unchanged).
        """
        b, n, species = len(self), len(s), list(s.species)  # .species refuses disordered sites
        if n == 0:
            raise ValueError("structure without atoms")
        rows = torch.cat([torch.tensor(s.cart_coords, dtype=_F64), torch.zeros(3, 3, dtype=_F64)])
        c0 = torch.tensor(s.lattice.matrix, dtype=_F64)[None]
        self.x = torch.cat([self.x, rows])
        self.v = torch.cat([self.v, torch.zeros_like(rows)])
        self.owner = torch.cat([self.owner, torch.full((n + 3,), b, dtype=torch.long)])
        self.cell = torch.cat([self.cell, torch.arange(n + 3) >= n])
        self.c0 = torch.cat([self.c0, c0])
        self.n = torch.cat([self.n, torch.tensor([n])])
        self.dt = torch.cat([self.dt, torch.tensor([_DT], dtype=_F64)])
        self.a = torch.cat([self.a, torch.tensor([_ASTART], dtype=_F64)])
        self.e0 = torch.cat([self.e0, torch.tensor([math.nan], dtype=_F64)])
        self.n_pos = torch.cat([self.n_pos, torch.zeros(1, dtype=torch.long)])
        self.taken = torch.cat([self.taken, torch.zeros(1, dtype=torch.long)])
        self.started = torch.cat([self.started, torch.zeros(1, dtype=torch.bool)])
        self.index.append(i)
        self.species.append(species)
        self.inputs.append(s)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the slots where the (B,) bool ``mask`` is False; the others keep their order."""
        rows = mask[self.owner]
        new_slot = torch.cumsum(mask.long(), 0) - 1
        self.x, self.v, self.cell = self.x[rows], self.v[rows], self.cell[rows]
        self.owner = new_slot[self.owner[rows]]
        for name in ("c0", "n", "dt", "a", "e0", "n_pos", "taken", "started"):
            setattr(self, name, getattr(self, name)[mask])
        kept = mask.tolist()
        self.index, self.species, self.inputs = ([v for v, k in zip(seq, kept) if k]
                                                 for seq in (self.index, self.species, self.inputs))

    def log_deform(self) -> torch.Tensor:
        """(B, 3, 3) ``L = log F``, read off the cell rows."""
        return self.x[self.cell].view(-1, 3, 3) / self.n.to(_F64)[:, None, None]

    def geometry(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``F`` (B, 3, 3), Cartesian positions (sum n_b, 3) and cells (B, 3, 3) of the state."""
        f = torch.linalg.matrix_exp(self.log_deform())
        atoms = ~self.cell
        pos = torch.einsum("rij,rj->ri", f[self.owner[atoms]], self.x[atoms])  # r = x F^T
        return f, pos, self.c0 @ f.transpose(1, 2)

    def dof_forces(self, f: torch.Tensor, forces: torch.Tensor, stress: torch.Tensor,
                   cells: torch.Tensor, relax_cell: bool) -> torch.Tensor:
        """(R, 3) forces on the DOFs from atomic forces (sum n_b, 3) and stresses (B, 3, 3) eV/A^3.

        Atom rows ``forces F``; cell rows as ``FrechetCellFilter.get_forces`` (zero without
        ``relax_cell``, which leaves the cell and reduces the DOFs to plain positions)."""
        out = torch.zeros_like(self.x)
        atoms = ~self.cell
        out[atoms] = torch.einsum("rj,rji->ri", forces, f[self.owner[atoms]])
        if relax_cell:
            volume = torch.linalg.det(cells).abs()[:, None, None]
            virial = -volume * 0.5 * (stress + stress.transpose(1, 2))
            grad = virial @ torch.linalg.inv(f.transpose(1, 2))
            log_f = self.log_deform().requires_grad_(True)
            with torch.enable_grad():
                (dlog,) = torch.autograd.grad((torch.linalg.matrix_exp(log_f) * grad).sum(), log_f)
            out[self.cell] = (dlog / self.n.to(_F64)[:, None, None]).reshape(-1, 3)
        return out

    def _per_slot(self, rows: torch.Tensor) -> torch.Tensor:
        """(B,) sums over each slot's rows of an (R,) tensor."""
        return torch.zeros(len(self), dtype=_F64).index_add_(0, self.owner, rows)

    def fire_step(self, g: torch.Tensor) -> None:
        """One ``ase.optimize.FIRE.step`` per slot, ``g`` (R, 3) the forces on the DOFs."""
        o = self.owner
        vf = self._per_slot((g * self.v).sum(1))
        g2 = self._per_slot((g * g).sum(1)).clamp_min(1e-300)
        vv = self._per_slot((self.v * self.v).sum(1))
        up = self.started & (vf > 0.0)
        down = self.started & ~(vf > 0.0)
        mixed = (1.0 - self.a[o, None]) * self.v + (self.a / g2.sqrt() * vv.sqrt())[o, None] * g
        self.v = torch.where(up[o, None], mixed, torch.where(down[o, None], 0.0, self.v))
        grow = up & (self.n_pos > _NMIN)
        self.dt = torch.where(grow, (self.dt * _FINC).clamp_max(_DTMAX), torch.where(down, self.dt * _FDEC, self.dt))
        self.a = torch.where(grow, self.a * _FA, torch.where(down, torch.full_like(self.a, _ASTART), self.a))
        self.n_pos = torch.where(up, self.n_pos + 1, torch.where(down, 0, self.n_pos))
        self.started = torch.ones_like(self.started)
        self.v = self.v + self.dt[o, None] * g
        dr = self.dt[o, None] * self.v
        norm = self._per_slot((dr * dr).sum(1)).sqrt()
        scale = torch.where(norm > _MAXSTEP, _MAXSTEP / norm.clamp_min(1e-300), torch.ones_like(norm))
        self.x = self.x + dr * scale[o, None]
        self.taken = self.taken + 1


def relax_batch(structures: Sequence[Structure], *, steps: int = 500, fmax: float = 0.1, relax_cell: bool = True,
                batch_size: int = RELAX_BATCH_SIZE, model_name: str = CHGNET_MODEL,
                progress: bool = True) -> list[Relaxation]:
    """Relax structures with CHGNet, up to ``batch_size`` at a time, one CHGNet pass per FIRE step.

    Same algorithm and records as :func:`crystalflow.metrics.energy.relax` (see the module doc).

    Args:
        structures: the starting structures (any sizes; they need not share a composition).
        steps: FIRE step budget per structure (0: static CHGNet evaluation, never converged).
        fmax: convergence threshold on the largest DOF force, atoms and scaled cell rows (eV/A).
        relax_cell: also relax the lattice (FrechetCellFilter); else positions only.
        batch_size: structures evaluated together per CHGNet pass (>= 1).
        model_name: CHGNet weights.
        progress: tqdm bar over finished structures.

    Returns:
        One :class:`Relaxation` per input, in order; failures are reported in ``error``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = load_chgnet(model_name)
    model.graph_converter.set_isolated_atom_response("ignore")  # as StructOptimizer(on_isolated_atoms=...)
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # only d/d(positions, strain) is needed: ~25% faster passes
    results: list[Relaxation | None] = [None] * len(structures)
    queue = list(enumerate(structures))[::-1]
    state = _FireBatch()
    bar = tqdm(total=len(structures), desc="relax", disable=not progress, leave=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while queue or len(state):
                while queue and len(state) < batch_size:
                    i, s = queue.pop()
                    try:
                        state.add(i, s)
                    except Exception as exc:
                        results[i] = Relaxation(s, math.nan, math.nan, 0, False, f"{type(exc).__name__}: {exc}")
                if not len(state):
                    break
                _advance(state, model, results, steps=steps, fmax=fmax, relax_cell=relax_cell)
                bar.n = sum(r is not None for r in results)
                bar.set_postfix(active=len(state), refresh=False)
                bar.refresh()
    finally:
        bar.close()
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _advance(state: _FireBatch, model: Any, results: list[Relaxation | None], *, steps: int, fmax: float,
             relax_cell: bool) -> None:
    """Evaluate every active structure once, retire the finished ones into ``results`` and take one
    FIRE step on the rest (ASE's ``irun`` loop body, batched)."""
    f, pos, cells = state.geometry()
    sizes = state.n.tolist()
    volumes = torch.linalg.det(cells).abs().tolist()
    structs: list[Structure | Exception] = []
    for b, chunk in enumerate(torch.split(pos, sizes)):
        problem = collapsed_cell(volume=volumes[b], num_atoms=sizes[b])
        if problem is not None:  # before its graph: that of a near-flat cell fills any memory
            structs.append(ValueError(problem))
            continue
        try:
            structs.append(Structure(Lattice(cells[b].numpy()), state.species[b], chunk.numpy(),
                                     coords_are_cartesian=True))
        except Exception as exc:
            structs.append(exc)
    graphs: list[Any] = []
    for s in structs:
        try:
            graphs.append(s if isinstance(s, Exception) else model.graph_converter(s))
        except Exception as exc:
            graphs.append(exc)
    ok = [b for b, g in enumerate(graphs) if not isinstance(g, Exception)]
    preds: list[Any] = list(graphs)
    for b, p in zip(ok, _predict_each(model, [graphs[b] for b in ok]) if ok else []):
        preds[b] = p
    nan = float("nan")
    done = torch.zeros(len(state), dtype=torch.bool)
    forces = torch.zeros(pos.shape, dtype=_F64)
    stress = torch.zeros(len(state), 3, 3, dtype=_F64)
    offsets = [0, *torch.cumsum(state.n, 0).tolist()]
    for b, p in enumerate(preds):
        taken, e0 = int(state.taken[b]), float(state.e0[b])
        if isinstance(p, Exception) or not (math.isfinite(p[0]) and bool(torch.isfinite(p[1]).all())
                                            and bool(torch.isfinite(p[2]).all())):
            error = f"{type(p).__name__}: {p}" if isinstance(p, Exception) else "non-finite energy"
            results[state.index[b]] = Relaxation(state.inputs[b], nan, e0, taken, False, error)
            done[b] = True
            continue
        if taken == 0:
            state.e0[b] = e0 = p[0]
        forces[offsets[b]:offsets[b + 1]] = p[1].to(_F64)
        stress[b] = p[2].to(_F64) / _EV_A3_IN_GPA
    g = state.dof_forces(f, forces, stress, cells, relax_cell)
    dof_max = torch.zeros(len(state), dtype=_F64).scatter_reduce_(0, state.owner, g.norm(dim=1), "amax")
    atom_max = torch.zeros(len(state), dtype=_F64).scatter_reduce_(
        0, state.owner[~state.cell], forces.norm(dim=1), "amax")
    for b in range(len(state)):
        if done[b] or not (dof_max[b] < fmax or int(state.taken[b]) >= steps):
            continue
        s, (energy, _, _, magmoms) = structs[b], preds[b]
        s.add_site_property("magmom", [float(m) for m in magmoms])
        converged = steps > 0 and float(atom_max[b]) <= fmax
        results[state.index[b]] = Relaxation(s, energy, float(state.e0[b]), int(state.taken[b]), converged)
        done[b] = True
    state.fire_step(g)  # finished slots step too (cheap), then leave
    state.keep(~done)


def relax_batch_chunk(task: tuple[list[dict], dict]) -> list[Relaxation]:
    """Process-pool worker: :func:`relax_batch` of pymatgen dicts with keyword arguments."""
    data, kwargs = task
    return relax_batch([Structure.from_dict(d) for d in data], **kwargs)
