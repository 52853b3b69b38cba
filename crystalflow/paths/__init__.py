"""Conditional probability paths, one per field."""

from crystalflow.paths.geodesic import GeodesicPath, PathSample, ProductPath

__all__ = ["GeodesicPath", "PathSample", "ProductPath"]
