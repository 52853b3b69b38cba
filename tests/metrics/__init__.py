"""Tests of crystalflow.metrics."""
