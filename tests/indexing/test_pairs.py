"""The retriever's training pairs, built from crafted documents through a real index."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from neat.config.indexing import IndexingConfig
from neat.indexing import MarkdownIndexer
from neat.indexing.pairs import (
    PassageChunk,
    TrainingPair,
    build_pairs,
    code_pairs,
    heading_pairs,
    mine_hard_negatives,
    pairs_from_index,
    read_pairs,
    sentence_pairs,
    write_pairs,
)

FILLER = (
    "Ownership rules decide which variable frees a value when it goes out of scope, and the "
    "compiler checks those rules before the program ever runs on a machine."
)

GUIDE = f"""# Memory Guide

## Borrowing References Safely

A reference lets a function read a value without taking ownership of it. Mutable references
are exclusive, so two parts of a program never change the same value at once. {FILLER}

## Summary

{FILLER} {FILLER}

## Printing Values

To print a value with its debug representation, derive the Debug trait and use the
placeholder inside the format string.

```rust
#[derive(Debug)]
struct Point {{ x: i32, y: i32 }}
println!("{{:?}}", Point {{ x: 1, y: 2 }});
```
"""

OTHER = f"""# Threads

## Sharing State Between Threads

A mutex guards data shared between threads so only one thread touches it at a time. Mutable
references are exclusive as well, which is the same rule for a single thread. {FILLER}
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "guide.md").write_text(GUIDE, encoding="utf-8")
    (root / "threads.md").write_text(OTHER, encoding="utf-8")
    # unrelated sections, so that BM25 does not take every shared word for a common one
    for topic in ("Gardening", "Cooking", "Sailing", "Weather"):
        body = f"Notes on {topic.lower()} for beginners, written down over many seasons."
        (root / f"{topic.lower()}.md").write_text(f"# {topic}\n\n{body}\n", encoding="utf-8")
    path = tmp_path / "index.db"
    with MarkdownIndexer(path, IndexingConfig()) as indexer:
        indexer.build([root])
    return path


def chunk(text: str, *headings: str, id: int = 1) -> PassageChunk:
    return PassageChunk(id, tuple(headings), text)


def test_heading_is_a_query_for_its_body_without_the_heading() -> None:
    text = f"## Borrowing References Safely\n\n{FILLER}"
    (pair,) = heading_pairs([chunk(text, "Memory Guide", "Borrowing References Safely")])
    assert pair.query == "Borrowing References Safely"
    assert pair.kind == "heading"
    assert "Borrowing" not in pair.passage
    assert pair.passage.startswith("Memory Guide\n")  # the parents stay: they are context
    assert FILLER in pair.passage


@pytest.mark.parametrize("heading", ["Summary", "Section 137", "2.3 API"])
def test_uninformative_headings_make_no_pair(heading: str) -> None:
    assert list(heading_pairs([chunk(f"## {heading}\n\n{FILLER}", heading)])) == []


def test_a_later_piece_of_a_section_is_not_a_heading_pair() -> None:
    # the section split at max_chars: this piece does not start with its heading
    assert list(heading_pairs([chunk(FILLER, "Borrowing References Safely")])) == []


def test_sentence_pair_cuts_the_sentence_out_of_its_chunk() -> None:
    first = "A reference lets a function read a value without taking ownership of it."
    # the sentence wraps over two lines in the source, as markdown paragraphs do
    last = "Each value has exactly one owner at any moment while the whole program runs."
    text = first.replace("without ", "without\n") + " " + FILLER + " " + last
    pairs = list(sentence_pairs([chunk(text, "Guide")], random.Random(0), per_chunk=3))
    queries = {p.query for p in pairs}
    assert first in queries
    for pair in pairs:
        assert pair.kind == "sentence"
        flat = " ".join(pair.passage.split())
        assert pair.query not in flat
        assert pair.passage.startswith("Guide\n")


def test_code_block_pairs_with_the_paragraph_before_it() -> None:
    pairs = list(code_pairs([chunk(GUIDE.split("## Printing Values\n\n")[1], "Printing Values")]))
    (pair,) = pairs
    assert pair.query.startswith("To print a value with its debug representation")
    assert pair.passage.startswith("```rust") and pair.passage.endswith("```")
    assert "#[derive(Debug)]" in pair.passage


def test_one_line_code_blocks_are_skipped() -> None:
    text = "Run the tests of the whole project with this command here.\n\n```\ncargo test\n```"
    assert list(code_pairs([chunk(text)])) == []


def test_hard_negatives_are_the_best_hits_other_than_the_pair_itself() -> None:
    pair = TrainingPair("mutable references", "own passage", 7, "sentence")
    passages = {7: "own passage", 3: "three", 9: "nine", 4: "four"}
    (mined,) = mine_hard_negatives(
        [pair], lambda query, k: [7, 3, 5, 9, 4][:k], passages, per_pair=2
    )
    assert mined.negatives == ("three", "nine")  # 7 is the pair's own chunk, 5 is unknown
    assert (mined.query, mined.passage, mined.chunk_id) == (pair.query, pair.passage, 7)


def test_pairs_from_a_real_index(db: Path) -> None:
    pairs = pairs_from_index(db, seed=1, negatives=1)
    kinds = {p.kind for p in pairs}
    assert kinds == {"heading", "sentence", "code"}
    headings = {p.query for p in pairs if p.kind == "heading"}
    assert "Borrowing References Safely" in headings
    assert "Sharing State Between Threads" in headings
    assert "Summary" not in headings
    by_query = {p.query: p for p in pairs}
    # the mutable-references rule is in both files: BM25 finds the other file's chunk
    borrowing = by_query["Borrowing References Safely"]
    assert "Borrowing" not in borrowing.passage  # the folded "# Memory Guide" line too
    assert "# Memory Guide" not in borrowing.passage
    assert borrowing.negatives and "mutex" in borrowing.negatives[0]
    for pair in pairs:
        assert pair.passage not in pair.negatives
    assert pairs_from_index(db, seed=1, negatives=1) == pairs  # deterministic
    assert pairs_from_index(db, seed=2, negatives=1) != pairs


def test_pairs_round_trip_through_json_lines(db: Path, tmp_path: Path) -> None:
    pairs = pairs_from_index(db)
    out = tmp_path / "pairs.jsonl"
    assert write_pairs(pairs, out) == len(pairs)
    assert read_pairs(out) == pairs
    assert not out.with_name("pairs.jsonl.tmp").exists()


def test_build_pairs_deduplicates() -> None:
    text = f"## Borrowing References Safely\n\n{FILLER} {FILLER}"
    same = chunk(text, "Borrowing References Safely")
    pairs = build_pairs([same, same], seed=0)
    assert len(pairs) == len({(p.query, p.chunk_id) for p in pairs})
