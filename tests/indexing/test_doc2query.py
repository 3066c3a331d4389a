"""doc2query pairs: a real query LM trained through neat on a corpus with a learnable pattern,
then queries for chunks it never saw."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from neat.doc2query import (
    DONE_MARKER,
    Doc2QueryRecipe,
    doc2query_pairs,
    filter_queries,
    generate_queries,
)
from neat.indexing.pairs import PassageChunk, TrainingPair, heading_pairs
from neat.indexing.records import search_text

FIRST = ["cache", "retry", "log", "buffer", "thread", "socket", "queue", "token", "batch", "shard"]
SECOND = ["size", "limit", "level", "timeout", "count", "path", "mode", "depth", "rate", "port"]
NAMES = [f"{a}_{b}" for a in FIRST for b in SECOND]
random.Random(0).shuffle(NAMES)
SENTENCES = (
    "The {n} option is read at start-up.",
    "Set {n} in the settings file to change it.",
    "If {n} is missing, a default is used.",
    "Most users never change {n}.",
    "Changing {n} takes effect after a restart.",
    "See the reference for every value {n} accepts.",
)
TINY = Doc2QueryRecipe(
    n_layer=2, n_head=2, n_embd=64, block_size=96, vocab_size=512, batch_size=16, lr=3e-3
)
STEPS = 300


def section(i: int, name: str) -> PassageChunk:
    """A section titled "How to configure NAME" whose body names NAME four times."""
    body = " ".join(random.Random(i).sample(SENTENCES, 4)).format(n=name)
    heading = f"How to configure {name}"
    return PassageChunk(i, ("Settings", heading), f"## {heading}\n\n{body}")


CHUNKS = [section(i, name) for i, name in enumerate(NAMES[:80])]
TRAIN, HELD_OUT = CHUNKS[:60], CHUNKS[60:]  # held-out names are new pairings of known words


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Models this small train fastest on one thread (and do not stall on a busy core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doc2query")


@pytest.fixture(scope="module")
def generated(work: Path) -> list[TrainingPair]:
    seeds = list(heading_pairs(TRAIN))
    assert len(seeds) == 60
    return doc2query_pairs(HELD_OUT, seeds, work, seed=0, steps=STEPS, device="cpu", recipe=TINY)


def test_queries_for_unseen_chunks_name_their_subject(generated: list[TrainingPair]) -> None:
    # The only way to write the right name for a held-out chunk is to read it from the chunk:
    # no training section has that pairing of words.
    by_chunk = {p.chunk_id: p for p in generated}
    named = [NAMES[c.id] in by_chunk[c.id].query for c in HELD_OUT if c.id in by_chunk]
    assert len(by_chunk) >= 15
    assert sum(named) >= 0.7 * len(HELD_OUT), [p.query for p in generated]
    for pair in generated:
        chunk = CHUNKS[pair.chunk_id]
        assert pair.kind == "doc2query"
        assert pair.passage == search_text(chunk.heading_path, chunk.text)
        assert "\n" not in pair.query and len(pair.query.split()) >= 2


def test_same_inputs_reuse_the_run_and_give_the_same_queries(
    work: Path, generated: list[TrainingPair]
) -> None:
    runs = sorted(work.glob("run-*"))
    assert len(runs) == 1 and (runs[0] / DONE_MARKER).exists()
    stamp = (runs[0] / DONE_MARKER).stat().st_mtime_ns
    again = doc2query_pairs(
        HELD_OUT, list(heading_pairs(TRAIN)), work, seed=0, steps=STEPS, device="cpu", recipe=TINY
    )
    assert again == generated
    assert sorted(work.glob("run-*")) == runs  # reused, not retrained
    assert (runs[0] / DONE_MARKER).stat().st_mtime_ns == stamp


def test_training_again_from_scratch_gives_the_same_queries(
    tmp_path: Path, generated: list[TrainingPair]
) -> None:
    seeds = list(heading_pairs(TRAIN))
    fresh = doc2query_pairs(
        HELD_OUT, seeds, tmp_path, seed=0, steps=STEPS, device="cpu", recipe=TINY
    )
    assert fresh == generated


def test_batched_generation_matches_one_prompt_at_a_time(work: Path) -> None:
    run = next(work.glob("run-*"))
    chunks = HELD_OUT[:6]
    batched = generate_queries(chunks, run, seed=3, per_chunk=2, device="cpu")
    greedy_alone = [generate_queries([c], run, seed=3, device="cpu")[0] for c in chunks]
    assert [q[0] for q in batched] == [q[0] for q in greedy_alone]
    assert generate_queries(chunks, run, seed=3, per_chunk=2, device="cpu") == batched


def test_too_few_seed_pairs_give_nothing_and_train_nothing(tmp_path: Path) -> None:
    seeds = list(heading_pairs(TRAIN[:10]))
    assert doc2query_pairs(HELD_OUT, seeds, tmp_path, steps=5, device="cpu", recipe=TINY) == []
    assert list(tmp_path.iterdir()) == []


def test_only_heading_pairs_count_as_seeds(tmp_path: Path) -> None:
    sentences = [TrainingPair(f"a sentence {i} here", "passage", i, "sentence") for i in range(99)]
    assert doc2query_pairs(HELD_OUT, sentences, tmp_path, steps=5, recipe=TINY) == []


def test_filter_drops_copies_one_word_memorised_ungrounded_and_repeats() -> None:
    text = "## Intro\n\nThe quick brown fox jumps over the lazy dog and\nruns away into the woods."
    generated = [
        "  Where the fox runs ",
        "fox",  # one word
        "The `",  # one word and a backtick
        "",
        "   ",
        "the quick brown fox jumps over the lazy dog and runs",  # a copy across a line break
        "Where the fox runs",  # again, once stripped
        "quick brown fox jumps",  # a short piece of the chunk is still a query
        "The quick brown fox jumps over the lazy cat and runs",  # not a copy
        "Intro to the Woods",  # a training query, memorised by the LM
        "Installing Rust on Windows",  # nothing of it is in the chunk
        "Why foxes \ufffd",  # the cut character dropped, "Why foxes" is not in the chunk
    ]
    assert filter_queries(generated, text, {"intro to the woods"}) == [
        "Where the fox runs",
        "quick brown fox jumps",
        "The quick brown fox jumps over the lazy cat and runs",
    ]
    assert "Intro to the Woods" in filter_queries(generated, text)
