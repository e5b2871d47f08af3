"""Helpers for the latent-semantic-alignment study: everything non-trivial the notebooks call."""

__version__ = "0.1.0"
