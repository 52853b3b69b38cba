"""Solvers: ODEs on manifolds, discrete Euler steps for categorical fields, and the joint loop."""

from crystalflow.solvers.discrete import discrete_euler_step, sample_categorical
from crystalflow.solvers.joint import integrate_joint
from crystalflow.solvers.ode import STAGES, anti_annealed, integrate, nfe

__all__ = ["STAGES", "anti_annealed", "discrete_euler_step", "integrate", "integrate_joint", "nfe",
           "sample_categorical"]
