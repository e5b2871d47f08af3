"""What the built-in world knows: entities with attributes, priced items and library functions.

Every family of the study asks for recall of one of these facts. Each subject gets a log-uniform
frequency weight, so some facts are seen often (both model sizes learn them) and some rarely (only the
larger model memorises them): that spread is what makes scale matter, and what keeps the student
above chance.
"""

from __future__ import annotations

import builtins
import keyword
import operator
import random
from dataclasses import asdict, dataclass, field

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "job": ("baker", "farmer", "teacher", "doctor", "pilot", "sailor", "miner", "tailor",
            "painter", "singer", "judge", "nurse", "guard", "cook", "smith", "poet"),
    "color": ("red", "blue", "green", "yellow", "purple", "orange", "white", "black",
              "brown", "pink", "gray", "gold"),
    "food": ("bread", "rice", "soup", "cheese", "apples", "fish", "beans", "cake",
             "honey", "nuts", "plums", "eggs"),
    "pet": ("cat", "dog", "horse", "goat", "parrot", "rabbit", "owl", "turtle",
            "fox", "pig", "duck", "mouse"),
}
# How the corpus states each attribute; the first form is also the answer prefix of `facts` questions.
STATEMENTS = {
    "city": ("{e} lives in {v} .", "{e} is from {v} .", "the home town of {e} is {v} ."),
    "job": ("{e} works as a {v} .", "{e} is a {v} .", "the job of {e} is {v} ."),
    "color": ("{e} likes the color {v} .", "the favourite color of {e} is {v} .", "{e} loves {v} things ."),
    "food": ("{e} likes to eat {v} .", "the favourite food of {e} is {v} .", "{e} often eats {v} ."),
    "pet": ("{e} has a pet {v} .", "{e} keeps a {v} at home .", "the pet of {e} is a {v} ."),
}
N_CITIES = 16
OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}

_ONSETS = "b d f g k l m n p r s t v z".split()
_VOWELS = "a e i o u".split()
_CODAS = ["", "", "n", "r", "l", "k", "s"]


@dataclass(frozen=True)
class WorldConfig:
    """The knowledge of the world; the corpus and splits are drawn from it."""

    seed: int = 0
    n_entities: int = 300
    n_items: int = 400
    n_functions: int = 150
    frequency_range: float = 30.0  # ratio of the most to the least frequent subject
    test_pool_fraction: float = 0.3  # items / functions reserved for the test split
    split_scale: float = 1.0  # task split sizes relative to the paper's (smaller worlds for tests)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Entity:
    name: str
    attributes: dict[str, str]
    weight: float


@dataclass(frozen=True)
class Item:
    name: str
    price: int
    weight: float


@dataclass(frozen=True)
class Function:
    """A made-up library function ``name(x) = x <op> const``, known only from the corpus."""

    name: str
    op: str
    const: int
    weight: float

    def apply(self, expr: str, atomic: bool) -> str:
        """The function inlined on a (space-tokenised) Python expression."""
        inner = expr if atomic else f"( {expr} )"
        return f"{inner} {self.op} {self.const}"

    def __call__(self, x: int) -> int:
        return OPERATIONS[self.op](x, self.const)


@dataclass(frozen=True)
class World:
    config: WorldConfig
    cities: tuple[str, ...]
    entities: tuple[Entity, ...]
    items: tuple[Item, ...]
    functions: tuple[Function, ...]
    buyers: tuple[str, ...] = field(default=("Ana", "Bo", "Cy", "Dee", "Eli", "Fay"))

    @property
    def attribute_values(self) -> dict[str, tuple[str, ...]]:
        return {"city": self.cities, **ATTRIBUTE_VALUES}

    def split_pools(self, subjects: tuple) -> tuple[tuple, tuple]:
        """(train pool, test pool): the test pool's facts never appear in a transfer split's labels."""
        n_test = round(len(subjects) * self.config.test_pool_fraction)
        return subjects[n_test:], subjects[:n_test]


def _made_up_words(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """Distinct pronounceable lowercase words that are valid, non-builtin Python identifiers."""
    words: list[str] = []
    while len(words) < n:
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        word += rng.choice(_CODAS)
        if word in taken or keyword.iskeyword(word) or hasattr(builtins, word):
            continue
        taken.add(word)
        words.append(word)
    return words


def _log_uniform(rng: random.Random, spread: float) -> float:
    return spread ** rng.random()


def build_world(config: WorldConfig) -> World:
    """Draw the world's knowledge; deterministic in ``config``."""
    rng = random.Random(config.seed)
    taken = {v for values in ATTRIBUTE_VALUES.values() for v in values}
    n_words = N_CITIES + config.n_entities + config.n_items + config.n_functions
    words = _made_up_words(rng, n_words, taken)
    cities = tuple(w.capitalize() for w in words[:N_CITIES])
    words = words[N_CITIES:]
    values = {"city": cities, **ATTRIBUTE_VALUES}
    entities = tuple(
        Entity(
            name=words.pop().capitalize(),
            attributes={attr: rng.choice(vals) for attr, vals in values.items()},
            weight=_log_uniform(rng, config.frequency_range),
        )
        for _ in range(config.n_entities)
    )
    items = tuple(
        Item(words.pop(), rng.randint(1, 9), _log_uniform(rng, config.frequency_range))
        for _ in range(config.n_items)
    )
    functions = tuple(
        Function(words.pop(), rng.choice(list(OPERATIONS)), rng.randint(2, 9),
                 _log_uniform(rng, config.frequency_range))
        for _ in range(config.n_functions)
    )
    return World(config, cities, entities, items, functions)
