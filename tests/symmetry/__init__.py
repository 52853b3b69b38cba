"""Tests of crystalflow.symmetry."""
