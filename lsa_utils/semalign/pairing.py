"""Layer pairing (docs/method.md 1.3): which teacher layer supervises each student layer, and which layers train.

Every pairing is a list of `LayerSource`, element k - 1 for student layer k (layers are 1-based). A
source is one teacher layer or, with interpolation, a blend of two neighbours:

    target at student layer k = (1 - lam) h_T^(a) + lam h_T^(b)

Example:
    >>> pair_layers(6, 4)                      # floor map: teacher layers 1, 3, 4, 6
    [LayerSource(1), LayerSource(3), LayerSource(4), LayerSource(6)]
    >>> pair_layers(6, 4, interpolate=True)[0]
    LayerSource(1, 2, lam=0.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

PAIRINGS = ("floor", "interpolate", "attribution", "last")


@dataclass(frozen=True)
class LayerSource:
    """The teacher layer(s) a student layer's target comes from: ``(1 - lam) h^(a) + lam h^(b)``.

    A single layer is ``b == a`` (and ``lam == 0``); an interpolated pair keeps ``b == a + 1`` even when
    ``lam`` is 0, as the interpolation formula defines it.
    """

    a: int
    b: int
    lam: float = 0.0

    @classmethod
    def single(cls, layer: int) -> LayerSource:
        return cls(layer, layer, 0.0)

    @property
    def layers(self) -> tuple[int, ...]:
        """The teacher layers to read."""
        return (self.a,) if self.b == self.a else (self.a, self.b)

    @property
    def depth(self) -> float:
        """How deep the source sits, in teacher layers (``a + lam``)."""
        return self.a + self.lam

    def mix(self, states: Mapping[int, Tensor]) -> Tensor:
        """The target from per-layer teacher states ``{layer: [rows, D_T]}``."""
        if self.b == self.a:
            return states[self.a]
        return (1 - self.lam) * states[self.a] + self.lam * states[self.b]

    def to_json(self) -> int | list:
        """A single layer as its number, an interpolated pair as ``[a, b, lam]`` (cache keys, tables)."""
        return self.a if self.b == self.a else [self.a, self.b, self.lam]

    def __repr__(self) -> str:
        if self.b == self.a:
            return f"LayerSource({self.a})"
        return f"LayerSource({self.a}, {self.b}, lam={self.lam:g})"


def floor_pairing(n_source: int, n_target: int) -> list[int]:
    """l(k) = max(1, floor(L_source / L_target * k)) for target layers k = 1..L_target."""
    return [max(1, n_source * k // n_target) for k in range(1, n_target + 1)]


def pair_layers(n_source: int, n_target: int, critical: Sequence[int] = (),
                interpolate: bool = False) -> list[LayerSource]:
    """The source of each target layer k, as element k - 1.

    A critical source layer missing from the floor map is served by the first target layer whose
    paired source layer is at least as deep (the last target layer if none). With ``interpolate``, the
    sources blend the two source layers around depth ``L_source * k / L_target``.
    """
    if n_source < 1 or n_target < 1:
        raise ValueError(f"layer counts must be positive, got n_source={n_source}, n_target={n_target}")
    if interpolate:
        if n_source < 2:
            raise ValueError("interpolation needs at least two source layers")
        sources = []
        for k in range(1, n_target + 1):
            u = n_source * k / n_target
            a = min(max(int(u), 1), n_source - 1)
            sources.append(LayerSource(a, a + 1, min(max(u - a, 0.0), 1.0)))
        return sources
    pairing = floor_pairing(n_source, n_target)
    for layer in sorted(critical):
        if not 1 <= layer <= n_source:
            raise ValueError(f"critical layer {layer} outside 1..{n_source}")
        if layer not in pairing:
            k = next((i for i, src in enumerate(pairing) if src >= layer), n_target - 1)
            pairing[k] = layer
    return [LayerSource.single(layer) for layer in pairing]


def served_layers(pairing: Sequence[LayerSource], critical: Sequence[int]) -> list[int]:
    """Target layers (1-based) that serve the critical source layers: for each, the first target layer
    paired at least as deep (an interpolated pair counts at depth a + lam), the last one if none."""
    return sorted({next((k for k, source in enumerate(pairing, start=1) if source.depth >= layer), len(pairing))
                   for layer in critical})


def plan_layers(pairing: Sequence[LayerSource], critical: Sequence[int], mode: str, version: int,
                n_trained_layers: int | None = None) -> list[int]:
    """The student layers SemAlign trains under ``pairing`` (from `pair_layers` in pairing ``mode``).

    v1 trains the layers serving the critical teacher layers, v2 every layer (the frontier schedule);
    ``mode == "last"`` trains only the last layer; ``n_trained_layers`` overrides v1 and v2, taking the
    critical layers' partners first, then the deepest.
    """
    if mode not in PAIRINGS:
        raise ValueError(f"unknown pairing {mode!r}; choose from {PAIRINGS}")
    layers = list(range(1, len(pairing) + 1))
    served = served_layers(pairing, critical)
    if mode == "last":
        return [layers[-1]]
    if n_trained_layers is not None:
        preference = sorted(layers, key=lambda k: (k not in served, -k))
        return sorted(preference[:n_trained_layers])
    return sorted(served) if version == 1 else layers
