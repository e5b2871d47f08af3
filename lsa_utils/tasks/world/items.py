"""The built-in world's items for its four tasks, and their splits.

Prompt openings, answer prefixes and split sizes come from each task's `TaskSpec`. Each family mirrors one of the paper's benchmarks and each item needs recall of world knowledge:

==============  ===============  =====================================================  ===========
family          paper analogue   what the model must recall                             metric
==============  ===============  =====================================================  ===========
facts           MMLU             one attribute of an entity (four candidate answers)    accuracy
arith           GSM8K            the prices of one or two items, then multiply and add  exact match
code_complete   HumanEval        the operation and constant of one library function     pass@1
code_write      MBPP             those of one function, applied to a sum of arguments   pass@1
==============  ===============  =====================================================  ===========

Text is space-tokenised (every word, number and symbol is one token) so the word-level tokenizer
covers it exactly; Python accepts the spaced code as it is.

The transfer splits (train / align / extract) never reveal the knowledge the test split asks for:
`facts` tests another attribute of the same entities, and `arith` and the code families test items
and functions drawn from a reserved test pool.

The code families' splits cover their pool's functions evenly, as a benchmark's problems each exercise
a different part of a library; the corpus mentions a function as often as its frequency weight says.
Drawn by weight, five test items in six named the commoner half of the test functions, which the teacher
knew, so more code (the code teacher) had nothing left to add.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from datasets import Dataset, DatasetDict

from lsa_utils.tasks.spec import TRANSFER_SPLITS, WORLD_TASKS, TaskItem, get_task
from lsa_utils.tasks.world.knowledge import STATEMENTS, Entity, Function, Item, World

QUESTIONS = {
    "city": "where does {e} live ?",
    "job": "what is the job of {e} ?",
    "color": "what is the favourite color of {e} ?",
    "food": "what is the favourite food of {e} ?",
    "pet": "what pet does {e} have ?",
}
TEST_INPUTS = (0, 1, 2, 5, 11)
SINGLE_RECALL_SHARE = 0.5  # of arith items: one recall keeps the student above chance; two split the sizes
# Each code family has one shape and recalls one function: with a mix of one- and two-function shapes
# the student wrote the two-function shape for all, and with two functions per item it bound neither
# name to its argument (always writing "+"). The name and arguments vary, as in HumanEval and MBPP; the
# recall does not depend on them.
ENTRY_POINTS = ("f", "h", "calc", "compute", "solve", "step", "value", "result", "transform", "convert")
ARGUMENTS = ("x", "n", "v", "y")
ARGUMENT_PAIRS = (("a", "b"), ("x", "y"), ("m", "n"))


def facts_item(world: World, entity: Entity, attribute: str, rng: random.Random) -> TaskItem:
    """A four-option question; the options are the candidate answer tokens themselves.

    The answer restates the question ("Posorur lives in ...") so that the scored token is the recalled
    attribute itself, as the corpus states it.
    """
    answer = entity.attributes[attribute]
    distractors = rng.sample([v for v in world.attribute_values[attribute] if v != answer], 3)
    choices = distractors + [answer]
    rng.shuffle(choices)
    options = "\n".join(f"{letter} . {choice}" for letter, choice in zip("ABCD", choices))
    question = QUESTIONS[attribute].format(e=entity.name)
    statement = STATEMENTS[attribute][0].format(e=entity.name, v=answer)
    prompt = f"{get_task('facts').instruction}{question}\n{options}\nAnswer :"
    return {
        "prompt": prompt,
        "answer_prefix": statement.removesuffix(f" {answer} ."),
        "response": statement,
        "answer": answer,
        "choices": choices,
        "label": choices.index(answer),
        "subjects": [entity.name, attribute],
        "frequency": entity.weight,
    }


def arith_item(buyer: str, purchases: list[tuple[int, Item]]) -> TaskItem:
    """A word problem over recalled prices with a worked answer ending "So the answer is N ."

    The worked answer names no item ("3 * 4 = 12 ."): the price is recalled by attending to the item in the
    question, as the code families recall a function's constant. Restating the name first made the models
    copy a frequent item name instead of the asked one, so both sizes failed alike.
    """
    wanted = " and ".join(f"{qty} {item.name}" for qty, item in purchases)
    spec = get_task("arith")
    prompt = f"{spec.instruction}Question : {buyer} buys {wanted} . How many coins does {buyer} pay ?"
    steps = [f"{qty} * {item.price} = {qty * item.price} ."
             for qty, item in purchases]
    subtotals = [qty * item.price for qty, item in purchases]
    total = sum(subtotals)
    if len(subtotals) > 1:
        steps.append(f"{' + '.join(map(str, subtotals))} = {total} .")
    return {
        "prompt": prompt,
        "answer_prefix": spec.answer_prefix,
        "response": f"{spec.answer_prefix} {' '.join(steps)} So the answer is {total} .",
        "answer": str(total),
        "subjects": [item.name for _, item in purchases],
        "frequency": min(item.weight for _, item in purchases),
    }


def _code_item(family: str, prompt_code: str, signature: str, n_params: int, body: str,
               reference: Callable[..., int], fn: Function) -> TaskItem:
    """A code item recalling ``fn``; its reference solution is ``signature return body``, run by hidden tests.

    As in HumanEval, the signature is given: the answer prefix ends with it, so the model writes the body
    and a wrong function name cannot fail an otherwise right answer.
    """
    spec = get_task(family)
    entry_point = signature.split()[1]
    solution = f"{signature} return {body}"
    calls = [(x,) for x in TEST_INPUTS] if n_params == 1 else list(zip(TEST_INPUTS, TEST_INPUTS[::-1]))
    test_code = "\n".join(
        f"assert {entry_point}({', '.join(map(str, c))}) == {reference(*c)}" for c in calls
    )
    return {
        "prompt": spec.instruction + prompt_code,
        "answer_prefix": spec.answer_prefix + signature,
        "response": spec.answer_prefix + solution,
        "answer": solution,
        "entry_point": entry_point,
        "code_prefix": signature,
        "test_code": test_code,
        "subjects": [fn.name],
        "frequency": fn.weight,
    }


def code_complete_item(fn: Function, entry_point: str, arg: str) -> TaskItem:
    """HumanEval-like: a signature plus a docstring naming a library function; inline its behaviour."""
    signature = f"def {entry_point} ( {arg} ) :"
    prompt = f'{signature} """ apply {fn.name} to {arg} """'
    return _code_item("code_complete", prompt, signature, 1, fn.apply(arg, atomic=True), fn, fn)


def code_write_item(fn: Function, entry_point: str, args: tuple[str, str]) -> TaskItem:
    """MBPP-like: a one-line description and a signature; a library function of the sum of two arguments."""
    a, b = args
    text = f"Write a function that returns {fn.name} of the sum of {a} and {b} ."
    signature = f"def {entry_point} ( {a} , {b} ) :"
    body = fn.apply(f"{a} + {b}", atomic=False)
    return _code_item("code_write", f"{text}\n{signature}", signature, 2, body, lambda x, y: fn(x + y), fn)


def draw_weighted(rng: random.Random, subjects: tuple, k: int = 1) -> list:
    """Draw ``k`` distinct subjects with probability proportional to their frequency weight."""
    chosen: list = []
    while len(chosen) < k:
        pick = rng.choices(subjects, weights=[s.weight for s in subjects])[0]
        if pick not in chosen:
            chosen.append(pick)
    return chosen


def facts_items(world: World, rng: random.Random, pairs: list[tuple[Entity, str]]) -> Iterator[TaskItem]:
    for entity, attribute in pairs:
        yield facts_item(world, entity, attribute, rng)


def _n_recalls(rng: random.Random) -> int:
    return 1 if rng.random() < SINGLE_RECALL_SHARE else 2


def random_arith_item(world: World, items: tuple[Item, ...], rng: random.Random) -> TaskItem:
    purchases = [(rng.randint(1, 3), item) for item in draw_weighted(rng, items, _n_recalls(rng))]
    return arith_item(rng.choice(world.buyers), purchases)


def random_code_complete_item(fn: Function, rng: random.Random) -> TaskItem:
    return code_complete_item(fn, rng.choice(ENTRY_POINTS), rng.choice(ARGUMENTS))


def random_code_write_item(fn: Function, rng: random.Random) -> TaskItem:
    return code_write_item(fn, rng.choice(ENTRY_POINTS), rng.choice(ARGUMENT_PAIRS))


def _unique(draw: Callable[[], TaskItem], n: int, exclude: set[str]) -> list[TaskItem]:
    """``n`` items from ``draw`` whose prompts are new; adds them to ``exclude``."""
    items: list[TaskItem] = []
    for _ in range(200 * n):
        if len(items) == n:
            return items
        item = draw()
        if item["prompt"] not in exclude:
            exclude.add(item["prompt"])
            items.append(item)
    raise ValueError(f"could not draw {n} distinct items: the world is too small for the split sizes")


def _random_splits(sizes: dict[str, int], draw_train: Callable[[], TaskItem],
                   draw_test: Callable[[], TaskItem], seen: set[str]) -> dict[str, list[TaskItem]]:
    splits = {"test": _unique(draw_test, sizes["test"], seen)}
    for name in TRANSFER_SPLITS:
        splits[name] = _unique(draw_train, sizes[name], seen)
    return splits


def _facts_splits(world: World, rng: random.Random, sizes: dict[str, int]) -> dict[str, list[TaskItem]]:
    """Test asks one attribute of an entity; the transfer splits ask only its other attributes."""
    attributes = list(world.attribute_values)
    n_entities, needed = len(world.entities), sum(sizes[name] for name in TRANSFER_SPLITS)
    if sizes["test"] > n_entities or needed > n_entities * len(attributes) - sizes["test"]:
        raise ValueError(f"facts needs {sizes['test']} test entities and {needed} other (entity, attribute) "
                         f"pairs, but n_entities={n_entities}: raise n_entities or lower split_scale")
    test_entities = rng.sample(world.entities, sizes["test"])
    test_pairs = [(e, rng.choice(attributes)) for e in test_entities]
    held_out = {(e.name, a) for e, a in test_pairs}
    rest = [(e, a) for e in world.entities for a in attributes if (e.name, a) not in held_out]
    rng.shuffle(rest)
    splits = {"test": list(facts_items(world, rng, test_pairs))}
    start = 0
    for name in TRANSFER_SPLITS:
        splits[name] = list(facts_items(world, rng, rest[start:start + sizes[name]]))
        start += sizes[name]
    return splits


def split_items(world: World, family: str, seed: int) -> dict[str, list[TaskItem]]:
    """All splits of one family as lists of item dicts; deterministic in (world, family, seed)."""
    rng = random.Random(f"{seed}-{family}")
    sizes = {name: max(1, round(n * world.config.split_scale)) for name, n in get_task(family).split_sizes.items()}
    if family == "facts":
        return _facts_splits(world, rng, sizes)
    if family == "arith":
        train_pool, test_pool = world.split_pools(world.items)
        draw = lambda pool: lambda: random_arith_item(world, pool, rng)  # noqa: E731
    elif family in ("code_complete", "code_write"):
        train_pool, test_pool = world.split_pools(world.functions)
        make = random_code_complete_item if family == "code_complete" else random_code_write_item
        draw = lambda pool: lambda: make(rng.choice(pool), rng)  # noqa: E731  (evenly: see the module doc)
    else:
        raise ValueError(f"{family!r} is not a task of the built-in world; its tasks: {', '.join(WORLD_TASKS)}")
    return _random_splits(sizes, draw(train_pool), draw(test_pool), set())


def build_task_splits(world: World, seed: int) -> dict[str, DatasetDict]:
    """Every family's splits as HF ``DatasetDict`` objects (train, align, extract, test)."""
    return {
        family: DatasetDict({name: Dataset.from_list(items)
                             for name, items in split_items(world, family, seed).items()})
        for family in WORLD_TASKS
    }
