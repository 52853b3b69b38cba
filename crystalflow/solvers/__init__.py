"""Solvers: one loop for ODEs on manifolds (with a projection hook) and categorical fields
(discrete Euler steps); anti-annealing."""

from crystalflow.solvers.discrete import discrete_euler_step, sample_categorical
from crystalflow.solvers.ode import STAGES, JointField, anneal, anti_annealed, integrate, nfe

__all__ = ["STAGES", "JointField", "anneal", "anti_annealed", "discrete_euler_step", "integrate", "nfe",
           "sample_categorical"]
