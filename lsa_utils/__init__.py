"""Helpers for the latent-semantic-alignment study: everything non-trivial the notebooks call.

The stable public API (used by the notebooks and by people who teach with them) is exported here.
"""

from lsa_utils.semalign import align_hidden, alignment_map, layer_attribution, pair_layers, semantic_bases

__all__ = ["align_hidden", "alignment_map", "layer_attribution", "pair_layers", "semantic_bases"]
__version__ = "0.1.0"
