"""Stage 4, SemAlign: semantic bases and the alignment map, layer pairing and attribution, teacher targets, losses.

The training-free steps of the method (docs/method.md 1.1-1.5) and the losses it trains with (1.7 and 2):

- `bases`: S = pinv(W) with unit columns, M = S_S S_T^T, and h~ = M h / ||h||;
- `attribution`: Grad x Act per teacher layer, and the critical layers;
- `pairing`: which teacher layer supervises each student layer, and which student layers train;
- `targets`: the paired teacher states at response positions, mapped, cached on disk;
- `losses`: the v1 and v2 layer and output losses, and the controls' ones.
"""

from lsa_utils.semalign.attribution import critical_layers, layer_attribution
from lsa_utils.semalign.bases import (
    BASIS_KINDS, align_hidden, alignment_map, least_squares_map, model_bases, pair_alignment_map, recompose,
    semantic_bases,
)
from lsa_utils.semalign.pairing import PAIRINGS, LayerSource, pair_layers, plan_layers, served_layers

__all__ = [
    "BASIS_KINDS", "PAIRINGS", "LayerSource", "align_hidden", "alignment_map", "critical_layers",
    "layer_attribution", "least_squares_map", "model_bases", "pair_alignment_map", "pair_layers", "plan_layers",
    "recompose", "semantic_bases", "served_layers",
]
