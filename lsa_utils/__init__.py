"""Helpers for the latent-semantic-alignment study: everything non-trivial the notebooks call.

The package is laid out as the pipeline's stages, each a subpackage that imports only from the stages
before it (a test enforces the order):

    infra -> tasks -> models -> semalign -> training -> baselines -> evaluation -> study

The stable public API (used by the notebooks and by people who teach with them) is exported here. It is
imported on first use, so that modules which need no torch (the report, the statistics) start quickly.
"""

from importlib import import_module
from typing import Any

from lsa_utils.infra.numerics import pin_numerics

pin_numerics()  # before torch computes anything: the same kernels, so the same models, on every x86 machine

_EXPORTS = {
    "align_hidden": "lsa_utils.semalign",
    "alignment_map": "lsa_utils.semalign",
    "layer_attribution": "lsa_utils.semalign",
    "pair_layers": "lsa_utils.semalign",
    "semantic_bases": "lsa_utils.semalign",
    "record": "lsa_utils.models.capture",
    "train_lora": "lsa_utils.training.trainer",
    "transfer_model": "lsa_utils.study.methods",
    "ablation_variant": "lsa_utils.study.grid",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lsa_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
