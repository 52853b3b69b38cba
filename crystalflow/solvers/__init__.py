"""ODE solvers on manifolds."""

from crystalflow.solvers.ode import STAGES, anti_annealed, integrate, nfe

__all__ = ["STAGES", "anti_annealed", "integrate", "nfe"]
