"""BM25 queries drop words that are in most chunks: FTS5 gives them no weight, and their long
posting lists are what makes a query slow."""

from __future__ import annotations

from pathlib import Path

from neat.config.indexing import IndexingConfig
from neat.indexing import MarkdownIndexer

ANIMALS = ["zebra", "otter", "heron", "badger", "lynx", "walrus"]


def build(tmp_path: Path) -> MarkdownIndexer:
    docs = tmp_path / "docs"
    docs.mkdir()
    for animal in ANIMALS:
        text = f"# The {animal}\n\nThe {animal} lives by the river with the others.\n"
        (docs / f"{animal}.md").write_text(text, encoding="utf-8")
    indexer = MarkdownIndexer(tmp_path / "index.db", IndexingConfig())
    indexer.build([docs])
    return indexer


def test_common_words_are_dropped_without_changing_the_ranking(tmp_path: Path) -> None:
    with build(tmp_path) as indexer:
        store = indexer._store
        assert store._informative_words("the zebra lives") == ["zebra"]
        assert store._informative_words("Living zebras") == ["zebras"]  # stems compared
        with_common = indexer.search("the zebra lives by the river", mode="bm25")
        alone = indexer.search("zebra", mode="bm25")
        assert [h.path for h in with_common] == [h.path for h in alone]
        assert Path(with_common[0].path).name == "zebra.md" and len(with_common) == 1


def test_a_query_of_only_common_words_is_kept_whole(tmp_path: Path) -> None:
    with build(tmp_path) as indexer:
        assert indexer._store._informative_words("the river") == ["the", "river"]
        hits = indexer.search("the river", k=10, mode="bm25")
        assert len(hits) == len(ANIMALS)


def test_the_chunk_count_follows_new_files(tmp_path: Path) -> None:
    with build(tmp_path) as indexer:
        store = indexer._store
        assert store._chunk_count() == len(ANIMALS)
        extra = tmp_path / "docs" / "zebra-2.md"
        for i in range(len(ANIMALS) + 1):  # now "zebra" is in more than half of the chunks
            extra.with_name(f"zebra-{i}.md").write_text(f"# Zebra {i}\n\nzebra\n", "utf-8")
        indexer.build([tmp_path / "docs"])
        assert store._chunk_count() == 2 * len(ANIMALS) + 1
        assert store._informative_words("zebra otter") == ["otter"]
