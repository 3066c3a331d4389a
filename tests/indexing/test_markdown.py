"""The markdown chunker: front matter, heading paths, block-aware size limits, exact line
ranges, on hand-written documents, four real rust-book chapters and fuzzed text."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from neat.config.indexing import ChunkingConfig
from neat.indexing.markdown import parse_markdown
from neat.indexing.records import Chunk, ParsedFile

RUST_BOOK = Path(__file__).resolve().parents[1] / "data" / "rust-book"
DEFAULT = ChunkingConfig()


def parse(text: str, max_chars: int = 2000, overlap_chars: int = 200) -> ParsedFile:
    return parse_markdown(
        text, "docs/page.md", ChunkingConfig(max_chars=max_chars, overlap_chars=overlap_chars)
    )


def spans(parsed: ParsedFile) -> list[tuple[int, int]]:
    return [(c.start_line, c.end_line) for c in parsed.chunks]


def source_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff").split("\n")


def is_setext_underline(line: str) -> bool:
    stripped = line.strip()
    return set(stripped) in ({"="}, {"-"})


def assert_part_of_lines(text: str, piece: list[str]) -> None:
    """`text` starts inside the first line of `piece`, ends inside the last, and holds every
    line between; no whitespace at its edges."""
    assert text == text.strip() and text
    parts = text.split("\n")
    assert len(parts) == len(piece), (text, piece)
    if len(parts) == 1:
        assert parts[0] in piece[0]
    else:
        assert piece[0].endswith(parts[0]) and piece[-1].startswith(parts[-1])
        assert parts[1:-1] == piece[1:-1]


def assert_invariants(text: str, parsed: ParsedFile, chunking: ChunkingConfig) -> None:
    """What every parse must satisfy, whatever the input."""
    lines = source_lines(text)
    assert "\n".join(lines).endswith(parsed.body)
    body_lines = parsed.body.split("\n") if parsed.body else []
    first_body = len(lines) - len(body_lines)
    previous: Chunk | None = None
    previous_partial = False
    for chunk in parsed.chunks:
        assert chunk.path == "docs/page.md"
        assert first_body < chunk.start_line <= chunk.end_line <= len(lines)
        piece = lines[chunk.start_line - 1 : chunk.end_line]
        assert piece[0].strip() and piece[-1].strip()
        assert chunk.kind in ("prose", "code", "table", "mixed")
        assert len(chunk.text) <= chunking.max_chars, chunk
        partial = chunk.text != "\n".join(piece)
        if partial:  # cut inside its lines: a part of exactly those lines, trimmed
            assert_part_of_lines(chunk.text, piece)
        if previous is not None:
            if partial or previous_partial:  # parts of one line follow each other, unshared
                assert chunk.start_line >= previous.end_line
            else:
                assert chunk.start_line > previous.start_line
                assert chunk.end_line > previous.end_line
            if chunk.start_line <= previous.end_line and not (partial or previous_partial):
                assert chunk.heading_path == previous.heading_path  # the declared overlap
                shared = "\n".join(lines[chunk.start_line - 1 : previous.end_line])
                assert len(shared) <= chunking.overlap_chars
        previous, previous_partial = chunk, partial
    covered: set[int] = set()
    for chunk in parsed.chunks:
        covered.update(range(chunk.start_line, chunk.end_line + 1))
    for number, line in enumerate(body_lines, start=first_body + 1):
        if line.strip():
            assert number in covered, (number, line)


# -- front matter ------------------------------------------------------------------------------


def test_front_matter_is_parsed_and_kept_out_of_chunks() -> None:
    text = "---\ntitle: Guide\ntags: [setup, cli]\n---\n# Guide\n\nInstall it first.\n"
    parsed = parse(text)
    assert parsed.front_matter == {"title": "Guide", "tags": ["setup", "cli"]}
    assert parsed.body == "# Guide\n\nInstall it first.\n"
    assert parsed.chunks == [
        Chunk("docs/page.md", ("Guide",), 5, 7, "# Guide\n\nInstall it first.", "prose")
    ]


@pytest.mark.parametrize(
    "yaml_text",
    ["title: [unclosed", "- a list\n- not a mapping", "just a string", "date: 2023-13-45", ""],
)
def test_front_matter_that_is_not_a_valid_mapping_reads_as_empty(yaml_text: str) -> None:
    parsed = parse(f"---\n{yaml_text}\n---\nBody text.\n")
    assert parsed.front_matter == {}
    assert parsed.body == "Body text.\n"
    assert [c.text for c in parsed.chunks] == ["Body text."]


def test_front_matter_keys_become_strings_and_a_file_of_front_matter_has_no_chunks() -> None:
    parsed = parse("---\n1: one\nname: x\n---\n")
    assert parsed.front_matter == {"1": "one", "name": "x"}
    assert parsed.body == ""
    assert parsed.chunks == []


def test_a_dash_block_later_in_the_file_is_not_front_matter() -> None:
    parsed = parse("Intro.\n\n---\ntitle: x\n---\n")
    assert parsed.front_matter == {}
    assert parsed.body == "Intro.\n\n---\ntitle: x\n---\n"
    # a thematic break, then a setext heading
    assert [(c.heading_path, c.text) for c in parsed.chunks] == [
        ((), "Intro.\n\n---"),
        (("title: x",), "title: x\n---"),
    ]


def test_a_byte_order_mark_does_not_hide_front_matter() -> None:
    parsed = parse("\ufeff---\ntitle: x\n---\nText.\n")
    assert parsed.front_matter == {"title": "x"}
    assert [(c.start_line, c.text) for c in parsed.chunks] == [(4, "Text.")]


@pytest.mark.parametrize("text", ["", "\n", "  \n\t\n\n"])
def test_empty_or_blank_file_has_no_chunks(text: str) -> None:
    parsed = parse(text)
    assert parsed.front_matter == {}
    assert parsed.chunks == []


def billion_laughs() -> str:
    """The classic YAML alias bomb: 9 aliases per level, 9 levels deep (9**9 strings)."""
    lines = [
        "---",
        "title: Laughs",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join([*lines, "---", "# Laughs", "", "Body text survives.", ""])


def test_an_alias_bomb_in_front_matter_is_refused_quickly_with_a_warning() -> None:
    text = billion_laughs()
    assert len(text.encode()) < 400
    tracemalloc.start()
    started = time.perf_counter()
    try:
        parsed = parse(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # never let a failing assertion print `parsed`: its repr would expand the aliases
    loaded, warnings, chunks = bool(parsed.front_matter), parsed.warnings, parsed.chunks
    del parsed
    assert warnings == ("front matter ignored: its aliases expand to more than 10000 values",)
    assert not loaded
    assert time.perf_counter() - started < 1.0
    assert peak < 5 * 2**20
    assert [c.text for c in chunks] == ["# Laughs\n\nBody text survives."]


@pytest.mark.parametrize(
    ("yaml_text", "why"),
    [
        ("a: &a [1, *a]", "an alias refers to a value that contains it"),
        ("big: " + "x" * 70_000, "it is over 65536 characters"),
        ("title: [unclosed", "it is not valid YAML"),
        ("- a list", "it is a YAML list, not a mapping"),
    ],
)
def test_front_matter_that_is_refused_says_why(yaml_text: str, why: str) -> None:
    parsed = parse(f"---\n{yaml_text}\n---\nBody text.\n")
    assert parsed.front_matter == {}
    assert len(parsed.warnings) == 1 and why in parsed.warnings[0]
    assert [c.text for c in parsed.chunks] == ["Body text."]


def test_front_matter_with_a_few_aliases_and_merge_keys_still_loads() -> None:
    parsed = parse("---\nbase: &b {lang: en}\npage: {<<: *b, title: x}\nalso: *b\n---\nText.\n")
    assert parsed.front_matter == {
        "base": {"lang": "en"},
        "page": {"lang": "en", "title": "x"},
        "also": {"lang": "en"},
    }
    assert parsed.warnings == ()


# -- headings ------------------------------------------------------------------------------------


def test_heading_paths_follow_levels_including_jumps() -> None:
    text = (
        "Preface before any heading.\n\n"
        "# Guide\n\nIntro text.\n\n"
        "### Deep dive\n\nDeep text.\n\n"
        "## Setup\n\nSetup text.\n\n"
        "# Reference\n\nReference text.\n"
    )
    parsed = parse(text)
    assert [(c.heading_path, c.start_line, c.end_line) for c in parsed.chunks] == [
        ((), 1, 1),
        (("Guide",), 3, 5),
        (("Guide", "Deep dive"), 7, 9),
        (("Guide", "Setup"), 11, 13),
        (("Reference",), 15, 17),
    ]
    assert parsed.chunks[2].text == "### Deep dive\n\nDeep text."


def test_setext_headings_trailing_hashes_and_inline_markup_in_heading_text() -> None:
    text = (
        "Book *Title*\n============\n\nOpening.\n\n"
        "Part `Vec<T>` with [links](https://example.com) and **bold** ![alt text](i.png)\n"
        "---\n\nPart body.\n\n"
        "### Closing hashes ###\n\nLast words.\n"
    )
    parsed = parse(text)
    part = "Part Vec<T> with links and bold alt text"
    assert [c.heading_path for c in parsed.chunks] == [
        ("Book Title",),
        ("Book Title", part),
        ("Book Title", part, "Closing hashes"),
    ]
    assert spans(parsed) == [(1, 4), (6, 9), (11, 13)]
    assert parsed.chunks[1].text.startswith("Part `Vec<T>` with [links]")


def test_reference_links_in_headings_read_as_their_text() -> None:
    text = (
        "## Read [the book][trpl] and [Rust]\n\nText.\n\n[trpl]: https://doc.rust-lang.org/book/\n"
    )
    assert [c.heading_path for c in parse(text).chunks] == [("Read the book and [Rust]",)]


def test_hash_lines_inside_fences_are_not_headings() -> None:
    text = (
        "# Script\n\n```bash\n# install the tools\nmake install\n```\n\n"
        "~~~~\n## also not a heading\n~~~~\n\n    # indented code, not a heading\n"
    )
    parsed = parse(text)
    assert len(parsed.chunks) == 1
    assert parsed.chunks[0].heading_path == ("Script",)
    assert parsed.chunks[0].kind == "code"
    assert spans(parsed) == [(1, 12)]


def test_headings_inside_blockquotes_and_lists_do_not_start_sections() -> None:
    parsed = parse("# Top\n\n> ## Quoted\n> text\n\n- # Listed\n")
    assert [c.heading_path for c in parsed.chunks] == [("Top",)]


def test_heading_only_parent_folds_into_its_child() -> None:
    text = "# Book\n\n## Chapter\n\nChapter text.\n\n## Empty sibling\n\n## Last\n"
    parsed = parse(text)
    assert [(c.heading_path, c.text) for c in parsed.chunks] == [
        (("Book", "Chapter"), "# Book\n\n## Chapter\n\nChapter text."),
        (("Book", "Empty sibling"), "## Empty sibling"),
        (("Book", "Last"), "## Last"),
    ]
    assert spans(parsed) == [(1, 5), (7, 7), (9, 9)]


def test_empty_heading_and_heading_only_file() -> None:
    assert [(c.heading_path, c.text) for c in parse("#\n").chunks] == [(("",), "#")]
    parsed = parse("# A\n## B\n# C\n")
    assert [(c.heading_path, c.text) for c in parsed.chunks] == [
        (("A", "B"), "# A\n## B"),
        (("C",), "# C"),
    ]


# -- sizes -----------------------------------------------------------------------------------------

SENTENCE = "This paragraph holds exactly sixty characters of prose text."


def test_small_section_is_one_chunk_and_long_one_packs_whole_paragraphs_with_overlap() -> None:
    assert len(SENTENCE) == 60
    text = "# Notes\n\n" + "\n\n".join([SENTENCE] * 4) + "\n"
    assert spans(parse(text)) == [(1, 9)]
    parsed = parse(text, max_chars=150, overlap_chars=70)
    assert spans(parsed) == [(1, 5), (5, 7), (7, 9)]
    assert [c.text for c in parsed.chunks] == [
        f"# Notes\n\n{SENTENCE}\n\n{SENTENCE}",
        f"{SENTENCE}\n\n{SENTENCE}",
        f"{SENTENCE}\n\n{SENTENCE}",
    ]
    assert {c.heading_path for c in parsed.chunks} == {("Notes",)}
    assert_invariants(text, parsed, ChunkingConfig(max_chars=150, overlap_chars=70))


def test_zero_overlap_gives_disjoint_pieces() -> None:
    text = "# Notes\n\n" + "\n\n".join([SENTENCE] * 4) + "\n"
    assert spans(parse(text, max_chars=150, overlap_chars=0)) == [(1, 5), (7, 9)]


FENCE = "```rust\n" + "".join(f"let value_{i} = {i};\n" for i in range(8)) + "```"


def test_a_fence_that_fits_is_never_split_and_gets_no_overlap_copy() -> None:
    intro = "Before the code comes a paragraph that explains what the listing will show us."
    text = f"## Listing\n\n{intro}\n\n{FENCE}\n\nAfter.\n"
    assert len(FENCE) == 147
    chunking = ChunkingConfig(max_chars=200, overlap_chars=50)
    parsed = parse_markdown(text, "docs/page.md", chunking)
    assert [(c.text, c.kind) for c in parsed.chunks] == [
        (f"## Listing\n\n{intro}", "prose"),
        (f"{FENCE}\n\nAfter.", "mixed"),
    ]
    assert spans(parsed) == [(1, 3), (5, 16)]
    assert_invariants(text, parsed, chunking)


def test_an_oversized_fence_is_cut_between_lines_without_overlap() -> None:
    body = "".join(f"    let value_{i:02d} = compute({i});\n" for i in range(30))
    text = f"# Code\n\n~~~~python\n{body}~~~~\n"
    chunking = ChunkingConfig(max_chars=200, overlap_chars=100)
    parsed = parse_markdown(text, "docs/page.md", chunking)
    assert len(parsed.chunks) > 3
    assert parsed.chunks[0].text.startswith("# Code\n\n~~~~python\n    let value_00")
    assert parsed.chunks[-1].text.endswith("compute(29);\n~~~~")
    assert all(len(c.text) <= 200 and c.kind == "code" for c in parsed.chunks)
    for before, after in zip(parsed.chunks, parsed.chunks[1:], strict=False):
        assert after.start_line == before.end_line + 1
    assert_invariants(text, parsed, chunking)


def test_an_oversized_paragraph_is_cut_after_a_sentence_when_one_is_near() -> None:
    lines = [
        "The first line of this long paragraph ends.",  # 43 chars, a sentence end
        "A second line ends its sentence here too.",  # 41
        "while this third line runs on and on",  # 36: the farthest fit, mid-sentence
        "to finish the paragraph somewhere later on.",
    ]
    text = "\n".join(lines) + "\n"
    parsed = parse(text, max_chars=125, overlap_chars=0)
    assert [c.text for c in parsed.chunks] == ["\n".join(lines[:2]), "\n".join(lines[2:])]


def test_a_short_block_before_an_oversized_one_is_topped_up_rather_than_left_a_stub() -> None:
    items = "\n".join(f"- [Chapter {i}](ch{i:02d}.md)" for i in range(20))
    text = f"# Contents\n\nThe chapters:\n\n{items}\n"
    parsed = parse(text, max_chars=200, overlap_chars=0)
    first = parsed.chunks[0].text
    assert first.startswith("# Contents\n\nThe chapters:\n\n- [Chapter 0](ch00.md)\n")
    assert 150 < len(first) <= 200
    assert all(c.text.startswith("- [Chapter ") for c in parsed.chunks[1:])
    assert parsed.chunks[-1].text.endswith("- [Chapter 19](ch19.md)")


def test_a_single_overlong_line_is_cut_at_spaces() -> None:
    long_line = ("word " * 100).strip()
    text = f"# Title\n\nShort.\n\n{long_line}\n\nShort again.\n"
    chunking = ChunkingConfig(max_chars=120, overlap_chars=10)
    parsed = parse_markdown(text, "docs/page.md", chunking)
    words = " ".join(["word"] * 24)  # 119 characters: the most whole words that fit
    assert [(c.text, c.start_line, c.end_line) for c in parsed.chunks] == [
        ("# Title\n\nShort.", 1, 3),
        (words, 5, 5),
        (words, 5, 5),
        (words, 5, 5),
        (words, 5, 5),
        ("word word word word", 5, 5),
        ("Short again.", 7, 7),
    ]
    assert_invariants(text, parsed, chunking)


def test_one_huge_paragraph_line_is_cut_by_sentences_then_words_then_characters() -> None:
    sentences = [f"Sentence number {i} says a few words about the topic." for i in range(4000)]
    run_on = " ".join(f"word{i}" for i in range(300))  # one sentence of 2,390 characters
    token = "x" * 5000  # no place to cut at all
    line = " ".join([*sentences[:2000], run_on + ".", token, *sentences[2000:]])
    text = f"# Big\n\n{line}\n\nAfter.\n"
    assert len(line) > 200_000
    chunking = ChunkingConfig(max_chars=1000, overlap_chars=100)
    started = time.perf_counter()
    parsed = parse_markdown(text, "docs/page.md", chunking)
    assert time.perf_counter() - started < 2.0
    texts = [c.text for c in parsed.chunks]
    assert max(len(t) for t in texts) <= 1000
    assert (texts[0], texts[-1]) == ("# Big", "After.")
    assert "".join(texts[1:-1]).replace(" ", "") == line.replace(" ", "")  # nothing lost
    only_sentences = [t for t in texts[1:-1] if not re.search(r"word\d|x", t)]
    assert len(only_sentences) > 200  # whole sentences, cut between them
    assert all(t.startswith("Sentence number") and t.endswith("topic.") for t in only_sentences)
    assert ("x" * 1000) in texts
    assert_invariants(text, parsed, chunking)


def test_an_overlong_heading_and_code_line_are_cut_too() -> None:
    heading = "# " + "Title " * 60
    code = "```\n" + "y = 1; " * 100 + "\n```"
    text = f"{heading.strip()}\n\nText.\n\n{code}\n"
    chunking = ChunkingConfig(max_chars=100, overlap_chars=0)
    parsed = parse_markdown(text, "docs/page.md", chunking)
    assert max(len(c.text) for c in parsed.chunks) <= 100
    assert {c.kind for c in parsed.chunks if "y = 1" in c.text} == {"code"}
    assert_invariants(text, parsed, chunking)


def test_a_heading_stays_alone_only_when_the_block_after_it_cannot_join_it() -> None:
    text = f"## A heading\n\n{FENCE}\n"
    parsed = parse(text, max_chars=150, overlap_chars=20)
    assert [(c.text, c.kind) for c in parsed.chunks] == [
        ("## A heading", "prose"),
        (FENCE, "code"),
    ]
    assert [c.heading_path for c in parsed.chunks] == [("A heading",), ("A heading",)]


# -- kinds and block types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("```py\nx = 1\n```", "code"),
        ("    indented = True", "code"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "table"),
        ("Just words, *emphasised*.", "prose"),
        ("Words.\n\n```\ncode\n```", "mixed"),
        ("Words.\n\n| a |\n|---|\n| 1 |", "mixed"),
        ("- item\n\n  ```\n  nested fence\n  ```", "mixed"),
    ],
)
def test_chunk_kind(body: str, kind: str) -> None:
    parsed = parse(f"## Section\n\n{body}\n")
    assert [c.kind for c in parsed.chunks] == [kind]


def test_lists_html_indented_code_and_tabs_keep_their_blocks_whole() -> None:
    nested = "- top\titem\n  - nested one\n    - nested two\n- second item"
    html = "<table>\n  <tr><td>html cell</td></tr>\n</table>"
    code = "    indented code\n    more code"
    text = f"# Assorted\n\n{nested}\n\n{html}\n\n{code}\n\nClosing paragraph.\n"
    chunking = ChunkingConfig(max_chars=80, overlap_chars=15)
    parsed = parse_markdown(text, "docs/page.md", chunking)
    assert [(c.text, c.kind) for c in parsed.chunks] == [
        (f"# Assorted\n\n{nested}", "prose"),
        (f"- second item\n\n{html}", "prose"),  # the overlap: a whole list line
        (f"{code}\n\nClosing paragraph.", "mixed"),
    ]
    assert_invariants(text, parsed, chunking)


def test_link_reference_definitions_are_kept() -> None:
    parsed = parse("[rust]: https://www.rust-lang.org\n")
    assert [c.text for c in parsed.chunks] == ["[rust]: https://www.rust-lang.org"]
    parsed = parse("See [Rust][rust].\n\n[rust]: https://www.rust-lang.org\n")
    assert [c.text for c in parsed.chunks] == [
        "See [Rust][rust].\n\n[rust]: https://www.rust-lang.org"
    ]


def test_crlf_and_lf_give_the_same_chunks() -> None:
    text = "---\ntitle: x\n---\n# One\n\nFirst.\n\n## Two\n\n```\ncode\n```\n"
    unix = parse(text, max_chars=30, overlap_chars=5)
    windows = parse(text.replace("\n", "\r\n"), max_chars=30, overlap_chars=5)
    assert windows == unix
    assert windows.front_matter == {"title": "x"}
    assert all("\r" not in c.text for c in windows.chunks)
    assert spans(windows) == [(4, 6), (8, 12)]


# -- the rust book -----------------------------------------------------------------------------

BOOK_FILES = sorted(p.name for p in RUST_BOOK.glob("*.md") if p.name != "README.md")
GUESSING_GAME = [
    ("Programming a Guessing Game",),
    ("Programming a Guessing Game", "Setting Up a New Project"),
    ("Programming a Guessing Game", "Processing a Guess"),
    ("Programming a Guessing Game", "Processing a Guess", "Storing Values with Variables"),
    ("Programming a Guessing Game", "Processing a Guess", "Receiving User Input"),
    ("Programming a Guessing Game", "Processing a Guess", "Handling Potential Failure with Result"),
    (
        "Programming a Guessing Game",
        "Processing a Guess",
        "Printing Values with println! Placeholders",
    ),
    ("Programming a Guessing Game", "Processing a Guess", "Testing the First Part"),
    ("Programming a Guessing Game", "Generating a Secret Number"),
    (
        "Programming a Guessing Game",
        "Generating a Secret Number",
        "Increasing Functionality with a Crate",
    ),
    (
        "Programming a Guessing Game",
        "Generating a Secret Number",
        "Increasing Functionality with a Crate",
        "Ensuring Reproducible Builds",
    ),
    (
        "Programming a Guessing Game",
        "Generating a Secret Number",
        "Increasing Functionality with a Crate",
        "Updating a Crate to Get a New Version",
    ),
    ("Programming a Guessing Game", "Generating a Secret Number", "Generating a Random Number"),
    ("Programming a Guessing Game", "Comparing the Guess to the Secret Number"),
    ("Programming a Guessing Game", "Allowing Multiple Guesses with Looping"),
    (
        "Programming a Guessing Game",
        "Allowing Multiple Guesses with Looping",
        "Quitting After a Correct Guess",
    ),
    (
        "Programming a Guessing Game",
        "Allowing Multiple Guesses with Looping",
        "Handling Invalid Input",
    ),
    ("Programming a Guessing Game", "Summary"),
]


def book(name: str) -> str:
    return (RUST_BOOK / name).read_text(encoding="utf-8")


def parse_book(name: str, chunking: ChunkingConfig = DEFAULT) -> ParsedFile:
    return parse_markdown(book(name), "docs/page.md", chunking)


def top_level_ranges(text: str, token_type: str) -> list[tuple[int, int]]:
    """1-based inclusive line ranges of the file's top-level blocks of one type."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    return [
        (t.map[0] + 1, t.map[1])
        for t in tokens
        if t.type == token_type and t.level == 0 and t.map is not None
    ]


def test_the_fixture_files_are_there() -> None:
    assert BOOK_FILES == [
        "SUMMARY.md",
        "ch02-00-guessing-game-tutorial.md",
        "ch03-02-data-types.md",
        "ch09-01-unrecoverable-errors-with-panic.md",
    ]
    assert (RUST_BOOK / "LICENSE-MIT").is_file()


@pytest.mark.parametrize("name", BOOK_FILES)
@pytest.mark.parametrize("max_chars", [2000, 600])
def test_rust_book_chapters_keep_invariants(name: str, max_chars: int) -> None:
    chunking = ChunkingConfig(max_chars=max_chars, overlap_chars=max_chars // 10)
    parsed = parse_book(name, chunking)
    assert_invariants(book(name), parsed, chunking)
    assert all(len(c.text) <= max_chars for c in parsed.chunks)


def test_guessing_game_heading_paths_are_the_real_headings() -> None:
    text = book("ch02-00-guessing-game-tutorial.md")
    assert len(text) > 20_000
    parsed = parse_book("ch02-00-guessing-game-tutorial.md")
    paths = list(dict.fromkeys(c.heading_path for c in parsed.chunks))
    assert paths == GUESSING_GAME
    lines = text.split("\n")
    for chunk in parsed.chunks:  # a section's first chunk opens with its heading line
        if chunk is next(c for c in parsed.chunks if c.heading_path == chunk.heading_path):
            assert lines[chunk.start_line - 1].startswith("#" * len(chunk.heading_path) + " ")


@pytest.mark.parametrize("name", BOOK_FILES)
def test_rust_book_fences_and_tables_that_fit_are_never_split(name: str) -> None:
    text = book(name)
    parsed = parse_book(name)
    blocks = top_level_ranges(text, "fence") + top_level_ranges(text, "table_open")
    assert name == "SUMMARY.md" or blocks
    for first, last in blocks:
        assert any(c.start_line <= first and last <= c.end_line for c in parsed.chunks), (
            first,
            last,
        )


def test_the_largest_fence_in_the_book_is_whole_by_default_and_cut_when_over_the_limit() -> None:
    name = "ch09-01-unrecoverable-errors-with-panic.md"
    text = book(name)
    lines = text.split("\n")
    first, last = max(
        top_level_ranges(text, "fence"),
        key=lambda r: len("\n".join(lines[r[0] - 1 : r[1]])),
    )
    assert len("\n".join(lines[first - 1 : last])) == 1388
    whole = parse_book(name)
    assert {c.heading_path for c in whole.chunks} == {("Unrecoverable Errors with panic!",)}
    assert any(c.start_line <= first and last <= c.end_line for c in whole.chunks)
    cut = parse_book(name, ChunkingConfig(max_chars=1000, overlap_chars=100))
    inside = [c for c in cut.chunks if first < c.start_line and c.end_line <= last]
    assert inside and all(c.kind == "code" for c in inside)


def test_data_types_tables_and_deep_headings() -> None:
    parsed = parse_book("ch03-02-data-types.md")
    integer_types = [
        c
        for c in parsed.chunks
        if c.heading_path == ("Data Types", "Scalar Types", "Integer Types")
    ]
    assert integer_types[0].text.startswith("#### Integer Types\n")
    assert integer_types[0].start_line == 35
    assert any("| Length  | Signed  | Unsigned |" in c.text for c in integer_types)


def test_summary_lists_split_between_whole_items() -> None:
    parsed = parse_book("SUMMARY.md")
    assert len(parsed.chunks) > 1
    assert {c.heading_path for c in parsed.chunks} == {("The Rust Programming Language",)}
    for chunk in parsed.chunks:
        assert chunk.text.split("\n")[-1].endswith(".md)")


# -- fuzzing -----------------------------------------------------------------------------------

FRAGMENTS = [
    "# Title",
    "## Sub `code` [link](x)",
    "###### Six ##",
    "#",
    "Setext",
    "===",
    "---",
    "***",
    "- item",
    "  - nested",
    "1. one",
    "> quote",
    "> # quoted heading",
    "```",
    "~~~",
    "````python",
    "# a comment",
    "    indented code",
    "\tTabbed",
    "| a | b |",
    "|---|---|",
    "| 1 | 2 |",
    "<div>",
    "</div>",
    "<!-- note -->",
    "[ref]: http://example.com",
    "title: x",
    "key: [",
    "",
    "",
    "A sentence. Another one!",
    "word " * 12,
    "x" * 90,
]


@st.composite
def markdown_texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=30)), max_size=40))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(parts)


@st.composite
def chunkings(draw: st.DrawFn) -> ChunkingConfig:
    max_chars = draw(st.integers(min_value=1, max_value=300))
    overlap = draw(st.integers(min_value=0, max_value=max_chars - 1))
    return ChunkingConfig(max_chars=max_chars, overlap_chars=overlap)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(markdown_texts(), st.text(max_size=200)), chunking=chunkings())
@example(
    text="# Title\n[ref]: http://example.com", chunking=ChunkingConfig(max_chars=1, overlap_chars=0)
)
@example(text="\n0\n***\n```\n# Title", chunking=ChunkingConfig(max_chars=9, overlap_chars=5))
@example(text="---\n\x1b\n---", chunking=ChunkingConfig(max_chars=1, overlap_chars=0))
def test_any_text_parses_and_keeps_the_invariants(text: str, chunking: ChunkingConfig) -> None:
    parsed = parse_markdown(text, "docs/page.md", chunking)
    assert_invariants(text, parsed, chunking)
