"""Linear CKA (Kornblith et al., 2019) between layers, for the heatmaps of notebook 03.

CKA compares two sets of representations of the same n inputs and is invariant to orthogonal
transforms and isotropic scaling of either set, but not to arbitrary invertible linear maps: the right
tool for asking whether two layers of different widths carry the same structure.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def linear_cka(x: Tensor, y: Tensor) -> float:
    """CKA of x [n, d1] and y [n, d2]: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) after centring."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares the same inputs: got {x.shape[0]} and {y.shape[0]} rows")
    x = x.double() - x.double().mean(dim=0)
    y = y.double() - y.double().mean(dim=0)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()).clamp_min(1e-30))


def cka_matrix(rows: Mapping[int, Tensor], columns: Mapping[int, Tensor]) -> Tensor:
    """CKA of every pair of layers, [len(rows), len(columns)], in the mappings' order."""
    return torch.tensor([[linear_cka(a, b) for b in columns.values()] for a in rows.values()])
