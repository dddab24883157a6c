"""Everloop core: what the API, workflows, activities and capabilities share."""

__version__ = "0.1.0"
