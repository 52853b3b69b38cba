"""Conditional probability paths, one per field."""

from crystalflow.paths.geodesic import GeodesicPath, PathSample, ProductPath
from crystalflow.paths.times import sample_times
from crystalflow.paths.wyckoff import WyckoffPath, WyckoffPathSample

__all__ = ["GeodesicPath", "PathSample", "ProductPath", "WyckoffPath", "WyckoffPathSample", "sample_times"]
