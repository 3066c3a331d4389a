"""The prompt and answer conventions that exact-match scoring and the objectives that sample
answers (reinforce, GRPO) share."""

from __future__ import annotations

from neat.errors import NeatError
from neat.interfaces import ITokenizer

__all__ = [
    "IGNORE",
    "is_exact_answer",
    "newline_ids",
    "prompt_separator",
    "try_encode",
]

IGNORE = -100


def try_encode(tokenizer: ITokenizer, text: str) -> list[int] | None:
    """`text`'s ids, or None when the tokenizer cannot encode it."""
    try:
        return tokenizer.encode(text)
    except (NeatError, ValueError, KeyError):  # e.g. a character the char vocab never saw
        return None


def prompt_separator(tokenizer: ITokenizer) -> list[int]:
    """What starts every prompt: the end-of-text token, else a newline, as in the training
    stream (a question there follows the previous document's end)."""
    eot = tokenizer.eot_id
    return [eot] if eot is not None else (try_encode(tokenizer, "\n") or [])


def newline_ids(tokenizer: ITokenizer) -> set[int]:
    """Ids whose text holds a newline: generating one ends an answer."""
    found = set()
    for i in range(tokenizer.vocab_size):
        try:
            if "\n" in tokenizer.decode([i]):
                found.add(i)
        except (ValueError, KeyError, IndexError):
            continue
    return found


def is_exact_answer(tokenizer: ITokenizer, generated: list[int], answer: str) -> bool:
    """Right when the text before the first newline is the answer and a newline came."""
    try:
        text = tokenizer.decode(generated)
    except (ValueError, KeyError, IndexError):
        return False
    head, newline, _ = text.partition("\n")
    return bool(newline) and head == answer
