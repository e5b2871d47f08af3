"""Helpers for the latent-semantic-alignment study: everything non-trivial the notebooks call.

The stable public API (used by the notebooks and by people who teach with them) is exported here. It is
imported on first use, so that modules which need no torch (the report, the statistics) start quickly.
"""

from importlib import import_module
from typing import Any

__all__ = ["align_hidden", "alignment_map", "layer_attribution", "pair_layers", "semantic_bases"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("lsa_utils.semalign"), name)
    raise AttributeError(f"module 'lsa_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
