"""The chat format of the evaluation protocol, shared by the built-in world and real models.

``<|user|>\\n{prompt}\\n<|assistant|>\\n`` as in the paper's line of work; the loss and the metrics see
only what follows the assistant marker.
"""

from collections.abc import Mapping
from typing import Any

USER, ASSISTANT = "<|user|>", "<|assistant|>"
END_OF_TEXT = "<|endoftext|>"


def chat_prompt(prompt: str) -> str:
    """The text a model is conditioned on, up to (and including) the assistant marker."""
    return f"{USER}\n{prompt}\n{ASSISTANT}\n"


def chat_text(prompt: str, response: str) -> str:
    """A whole exchange: the conditioning text followed by the response."""
    return chat_prompt(prompt) + response


def evaluation_context(item: Mapping[str, Any]) -> str:
    """What a model continues when it is scored on a task item: the chat prompt, then the answer prefix."""
    return chat_prompt(item["prompt"]) + item["answer_prefix"]
