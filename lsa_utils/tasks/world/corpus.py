"""The pretraining corpus of the built-in world.

Documents state the world's facts in paraphrased sentences, each subject as often as its frequency
weight says, and show worked examples of every task format on the transfer pools only (never a test
item). A share of arithmetic drills keeps the algorithmic part of `arith` equally easy for both model
sizes, so that recall, not arithmetic, decides the score.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from lsa_utils.tasks.prompts import chat_text
from lsa_utils.tasks.spec import WORLD_TASKS, TaskItem
from lsa_utils.tasks.world.knowledge import STATEMENTS, Function, Item, World
from lsa_utils.tasks.world.items import (
    random_arith_item,
    random_code_complete_item,
    random_code_write_item,
    facts_item,
    split_items,
    draw_weighted,
)

PRICE_STATEMENTS = (
    "one {i} costs {p} coins .", "a {i} is sold for {p} coins .",
    "the price of one {i} is {p} coins .", "you pay {p} coins for a {i} .",
)
OP_WORDS = {"+": "adds {c} to", "-": "subtracts {c} from", "*": "multiplies by {c}"}
TOKEN_PATTERN = re.compile(r"\n|[^ \n]+")


@dataclass(frozen=True)
class CorpusMix:
    """Share of corpus tokens per kind of document (normalised when drawn)."""

    facts: float = 0.40
    arith: float = 0.25
    code: float = 0.25
    drills: float = 0.10
    qa_share: float = 0.15  # of facts documents: worked multiple-choice questions
    worked_share: float = 0.5  # of arith and code documents: worked task examples
    # Library documents from a reference manual: every function equally often, rather than as often as
    # general text mentions it. The code teacher's continuation reads the manual.
    library_manual: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def count_tokens(text: str) -> int:
    """Tokens of space-tokenised world text (what the word-level tokenizer yields)."""
    return len(TOKEN_PATTERN.findall(text))


def _biography(world: World, rng: random.Random) -> str:
    entity = draw_weighted(rng, world.entities)[0]
    attributes = rng.sample(list(entity.attributes), rng.randint(2, 4))
    return " ".join(rng.choice(STATEMENTS[a]).format(e=entity.name, v=entity.attributes[a])
                    for a in attributes)


def _price_list(world: World, rng: random.Random) -> str:
    items: list[Item] = draw_weighted(rng, world.items, rng.randint(1, 3))
    return " ".join(rng.choice(PRICE_STATEMENTS).format(i=it.name, p=it.price) for it in items)


def _function_doc(fn: Function, rng: random.Random) -> str:
    x = rng.randint(fn.const if fn.op == "-" else 0, 12)
    forms = (
        f"def {fn.name} ( x ) : return {fn.apply('x', atomic=True)}",
        f"the library function {fn.name} ( x ) returns {fn.apply('x', atomic=True)} .",
        f"{fn.name} {OP_WORDS[fn.op].format(c=fn.const)} its input .",
        f"{fn.name} ( {x} ) returns {fn(x)} .",
    )
    return " ".join(rng.sample(forms, rng.randint(1, 3)))


def _library_doc(world: World, rng: random.Random, manual: bool) -> str:
    k = rng.randint(1, 2)
    fns: list[Function] = rng.sample(world.functions, k) if manual else draw_weighted(rng, world.functions, k)
    return "\n".join(_function_doc(fn, rng) for fn in fns)


def _drill(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 6)):
        if rng.random() < 0.5:
            a, b = rng.randint(0, 60), rng.randint(0, 30)
            lines.append(f"{a} + {b} = {a + b} .")
        else:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            lines.append(f"{a} * {b} = {a * b} .")
    return " ".join(lines)


def _worked(item: TaskItem) -> str:
    return chat_text(item["prompt"], item["response"])


def _document_sources(world: World, mix: CorpusMix, rng: random.Random,
                      split_seed: int) -> dict[str, list[tuple[float, Callable[[], str]]]]:
    """Per corpus kind, weighted document makers; worked examples exclude every split item."""
    reserved = {item["prompt"] for family in WORLD_TASKS
                for split in split_items(world, family, split_seed).values() for item in split}
    item_pool, _ = world.split_pools(world.items)
    fn_pool, _ = world.split_pools(world.functions)
    attributes = list(world.attribute_values)

    def mentioned_function() -> Function:  # worked examples name functions as often as text mentions them
        return draw_weighted(rng, fn_pool)[0]

    def fresh(make: Callable[[], TaskItem]) -> Callable[[], str]:
        def draw() -> str:
            while (item := make())["prompt"] in reserved:
                pass
            return _worked(item)
        return draw

    facts_question = fresh(lambda: facts_item(world, draw_weighted(rng, world.entities)[0],
                                              rng.choice(attributes), rng))
    return {
        "facts": [(1 - mix.qa_share, lambda: _biography(world, rng)), (mix.qa_share, facts_question)],
        "arith": [(1 - mix.worked_share, lambda: _price_list(world, rng)),
                  (mix.worked_share, fresh(lambda: random_arith_item(world, item_pool, rng)))],
        "code": [(1 - mix.worked_share, lambda: _library_doc(world, rng, mix.library_manual)),
                 (mix.worked_share / 2, fresh(lambda: random_code_complete_item(mentioned_function(), rng))),
                 (mix.worked_share / 2, fresh(lambda: random_code_write_item(mentioned_function(), rng)))],
        "drills": [(1.0, lambda: _drill(rng))],
    }


def pretraining_documents(world: World, mix: CorpusMix, n_tokens: int, seed: int,
                          split_seed: int) -> Iterator[str]:
    """Documents until about ``n_tokens`` tokens, each kind kept at its share of the tokens so far."""
    rng = random.Random(f"corpus-{seed}")
    sources = _document_sources(world, mix, rng, split_seed)
    shares = {kind: getattr(mix, kind) for kind in sources}
    total_share = sum(shares.values())
    produced = dict.fromkeys(sources, 0)
    total = 0
    while total < n_tokens:
        kind = max(sources, key=lambda k: shares[k] / total_share * (total + 1) - produced[k])
        weights, makers = zip(*sources[kind])
        document = rng.choices(makers, weights=weights)[0]()
        n = count_tokens(document) + 1  # + end-of-text
        produced[kind] += n
        total += n
        yield document
