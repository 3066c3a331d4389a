"""Markdown files into front matter and heading-scoped chunks for the document index.

Structure comes from markdown-it's block tokens and their `.map` line ranges, never from
regexes, so a `# comment` inside a code fence stays code. Chunks are cut from the source by
whole lines: their text is the exact markdown, and their line numbers open in an editor.

Rules:

- Line endings are normalised to `\\n` first (CRLF and lone CR, as markdown-it itself does), and
  a leading byte order mark is dropped, so line numbers agree with the parser's. Blank means
  whitespace only; chunks never start or end on a blank line.
- Front matter that is not a YAML mapping reads as {}; its keys become strings. Front matter
  is untrusted: a block over `MAX_FRONT_MATTER_CHARS`, or one whose aliases would expand to
  more than `MAX_FRONT_MATTER_NODES` values (a "billion laughs" file) or refer to themselves,
  is not loaded, and `ParsedFile.warnings` says why.
- Every top-level block owns its lines up to the next block, so blank lines land in a chunk;
  lines the parser gives no token (link reference definitions) form a prose block of their own.
- A section runs from a top-level heading to the next (headings inside blockquotes or lists
  are content). A section without body whose next heading is deeper folds into that child:
  its heading line opens the child's first chunk. One followed by a sibling, a shallower
  heading or the end of file is a heading-only chunk, so that no line is lost.
- A section over `max_chars` is packed greedily from whole top-level blocks. Only a block over
  `max_chars` by itself is cut, between lines, preferably after a sentence, a blank line or
  before a nested block; a piece that whole blocks would leave under half full is topped up
  from such an oversized block. A heading stays with its first text unless that cannot fit.
- A continuation piece first repeats up to `overlap_chars` of whole trailing lines of the
  piece before, taken from prose only (never headings, code, tables or HTML: a fence is never
  reopened without its closing), and drops them when they leave no room.
- No chunk is over `max_chars`. A piece that whole lines cannot bring under it (one long
  line, a long heading) is cut inside its lines: after the last sentence end that fills at
  least half a chunk, else at the last whitespace, else anywhere; such a chunk's text is the
  part of its lines it holds, whitespace at its edges dropped, and it carries no overlap.
- `kind`: "code" when the body is fenced or indented code only, "table" when tables only,
  "mixed" when code or a table (at any depth) shares the chunk with other text, else "prose".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.front_matter import front_matter_plugin

from neat.config.indexing import ChunkingConfig
from neat.indexing.records import Chunk, ChunkKind, ParsedFile

__all__ = ["MAX_FRONT_MATTER_CHARS", "MAX_FRONT_MATTER_NODES", "parse_markdown"]

# Real front matter is a few hundred bytes of metadata; these bounds keep a hostile file from
# costing more than a moment and a few MB, whatever its aliases do once expanded (every
# consumer of front matter, JSON in the store first, expands shared references).
MAX_FRONT_MATTER_CHARS = 64 * 1024
MAX_FRONT_MATTER_NODES = 10_000

# One parser each for every file: MarkdownIt instances are reusable and costly to build.
# Chunking needs only block structure, so inline parsing, over half the parse time, is off
# and runs on heading text alone.
_BLOCKS = MarkdownIt("commonmark").enable("table").use(front_matter_plugin).disable("inline")
_INLINE = MarkdownIt("commonmark")

_HEADING = "heading"
_CODE_BLOCKS = frozenset({"fence", "code_block"})
_TABLE = "table"
# Token types (at any depth) whose lines an overlap never copies.
_NO_OVERLAP_TOKENS = frozenset({"fence", "code_block", "table_open", "html_block", "heading_open"})
_SENTENCE_ENDS = (".", "!", "?", ":")
_CLOSERS = "\"')]*_`"

# Break ranks between two lines, best first; the end of a section always ranks as a block.
_BLOCK, _SENTENCE, _LINE, _AFTER_HEADING = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Block:
    """A top-level block: `start`..`end` (0-based, end exclusive) runs to the next block."""

    start: int
    end: int
    kind: str
    level: int = 0
    title: str = ""


@dataclass(slots=True)
class _Section:
    """Blocks `first`..`stop` (exclusive) under one heading path; `headings` leading blocks
    are headings (more than one when heading-only parents folded into it)."""

    path: tuple[str, ...]
    first: int
    stop: int
    level: int
    headings: int


def parse_markdown(text: str, path: str, chunking: ChunkingConfig) -> ParsedFile:
    """Reads one markdown file into front matter, body and chunks; never raises on any text."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
    env: dict[str, Any] = {}  # collects link reference definitions for heading links
    tokens = _BLOCKS.parse(text, env)
    lines = _Lines(text.split("\n"))
    front_matter: dict[str, Any] = {}
    warnings: list[str] = []
    body_start = 0
    if tokens and tokens[0].type == "front_matter" and tokens[0].map is not None:
        front_matter, problem = _load_front_matter(tokens[0].content)
        if problem is not None:
            warnings.append(f"front matter ignored: {problem}")
        body_start = min(tokens[0].map[1], len(lines.lines))
    body = "\n".join(lines.lines[body_start:])
    blocks = _top_level_blocks(tokens, lines, body_start, env)
    chunker = _Chunker(lines, blocks, tokens, chunking)
    chunks: list[Chunk] = []
    for section in _sections(blocks):
        start, end = blocks[section.first].start, blocks[section.stop - 1].end
        for a, b in chunker.pieces(start, end):
            kind = chunker.kind(a, b)
            text = lines.text(a, b)
            if len(text) <= chunking.max_chars:
                chunks.append(Chunk(path, section.path, a + 1, b, text, kind))
                continue
            line, seen = a, 0  # the line of offset `seen`, counted incrementally
            for first, stop in _cut_text(text, chunking.max_chars):
                line += text.count("\n", seen, first)
                last = line + text.count("\n", first, stop)
                chunks.append(Chunk(path, section.path, line + 1, last + 1, text[first:stop], kind))
                seen = first
    return ParsedFile(path, front_matter, body, chunks, tuple(warnings))


class _TooLarge(Exception):
    pass


def _load_front_matter(source: str) -> tuple[dict[str, Any], str | None]:
    """The front matter mapping, or {} and why it was not loaded. The YAML is composed into
    nodes first and its expanded size measured before anything is constructed, so an alias
    bomb costs its own few hundred bytes, never its expansion. PyYAML raises more than
    YAMLError (ValueError for a bad date, RecursionError for deep nesting)."""
    if not source.strip():
        return {}, None
    if len(source) > MAX_FRONT_MATTER_CHARS:
        return {}, f"it is over {MAX_FRONT_MATTER_CHARS} characters"
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(source)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return {}, None
        _check_expanded_size(node)
        data = loader.construct_document(node)
    except _TooLarge as exc:
        return {}, str(exc)
    except yaml.YAMLError as exc:
        return {}, f"it is not valid YAML ({' '.join(str(exc).split())[:200]})"
    except RecursionError:
        return {}, "it is nested too deeply"
    except Exception as exc:
        return {}, f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        return {}, f"it is a YAML {type(data).__name__}, not a mapping of keys to values"
    return {str(key): value for key, value in data.items()}, None


def _check_expanded_size(root: yaml.Node) -> None:
    """Raises _TooLarge when the document, with every alias expanded, has more than
    MAX_FRONT_MATTER_NODES nodes, or when an alias refers to a node that contains it.
    Each distinct node is sized once (memoised), iteratively, so the check itself is linear
    in the source."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_FRONT_MATTER_NODES:
                raise _TooLarge(f"its aliases expand to more than {MAX_FRONT_MATTER_NODES} values")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise _TooLarge("an alias refers to a value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


# A sentence end inside a line: its punctuation (and closing quotes or markup) before a space.
_SENTENCE_END = re.compile(r"[.!?:][\"')\]*_`]*(?=\s)")


def _cut_text(text: str, limit: int) -> Iterator[tuple[int, int]]:
    """Spans of `text` of at most `limit` characters, without whitespace at their edges,
    together holding every other character in order. Linear in the text: each window is
    searched once."""
    n = len(text)
    pos = _skip_space(text, 0)
    while pos < n:
        cut = n if n - pos <= limit else _cut_point(text, pos, pos + limit)
        stop = cut
        while text[stop - 1].isspace():
            stop -= 1
        yield pos, stop
        pos = _skip_space(text, cut)


def _cut_point(text: str, pos: int, limit: int) -> int:
    """Where a piece starting at `pos` (not whitespace) ends, at most at `limit`: after a
    sentence that fills half of it, else at whitespace, else at `limit` itself."""
    sentence = -1
    for match in _SENTENCE_END.finditer(text, pos, limit + 1):  # + 1: the space after
        sentence = match.end()
    if 2 * (sentence - pos) >= limit - pos:
        return sentence
    space = max(text.rfind(c, pos + 1, limit + 1) for c in " \t\n")
    return space if space > pos else limit


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


class _Lines:
    """The file's lines, with O(1) length of any line range once blank edges are trimmed, so
    packing never joins strings to measure them."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        n = len(lines)
        blank = [not line.strip() for line in lines]
        self.offset = [0] * (n + 1)
        for i, line in enumerate(lines):
            self.offset[i + 1] = self.offset[i] + len(line) + 1
        # first_text[i]: first non-blank line at or after i; text_end[i]: one past the last
        # non-blank line before i.
        self.first_text = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            self.first_text[i] = self.first_text[i + 1] if blank[i] else i
        self.text_end = [0] * (n + 1)
        for i in range(n):
            self.text_end[i + 1] = self.text_end[i] if blank[i] else i + 1

    def trim(self, a: int, b: int) -> tuple[int, int]:
        """Lines a..b without leading and trailing blank lines; empty when start >= end."""
        return self.first_text[a], self.text_end[b]

    def size(self, a: int, b: int) -> int:
        a, b = self.trim(a, b)
        return self.offset[b] - self.offset[a] - 1 if a < b else 0

    def text(self, a: int, b: int) -> str:
        return "\n".join(self.lines[a:b])


def _top_level_blocks(
    tokens: Sequence[Token], lines: _Lines, body_start: int, env: dict[str, Any]
) -> list[_Block]:
    """The body's top-level blocks, each reaching forward to the next, so every body line
    belongs to exactly one block. Lines no token covers (link reference definitions) become
    a prose block of their own rather than a tail of a heading or a fence."""
    n = len(lines.lines)
    found: list[tuple[int, str, int, str]] = []
    covered = body_start  # one past the last line a token has covered
    for i, token in enumerate(tokens):
        if token.level != 0 or token.nesting < 0 or token.map is None:
            continue
        start = token.map[0]
        if token.type == "front_matter" or start < covered or start >= n:
            continue
        _add_uncovered(found, lines, covered, start)
        kind = token.type.removesuffix("_open")
        if kind == _HEADING:
            found.append((start, kind, _heading_level(token), _heading_title(tokens, i, env)))
        else:
            found.append((start, kind, 0, ""))
        covered = max(token.map[1], start + 1)
    _add_uncovered(found, lines, covered, n)
    if not found:
        return []
    starts = [body_start] + [start for start, *_ in found[1:]]
    ends = [*starts[1:], n]
    return [
        _Block(start, end, kind, level, title)
        for start, end, (_, kind, level, title) in zip(starts, ends, found, strict=True)
    ]


def _add_uncovered(found: list[tuple[int, str, int, str]], lines: _Lines, a: int, b: int) -> None:
    first, stop = lines.trim(a, b)
    if first < stop:
        found.append((first, "paragraph", 0, ""))


def _heading_level(token: Token) -> int:
    return int(token.tag[1:]) if token.tag[1:].isdigit() else 1


def _heading_title(tokens: Sequence[Token], index: int, env: dict[str, Any]) -> str:
    """The heading's words without markup: "`Vec<T>` and [links](x)" is "Vec<T> and links"."""
    if index + 1 >= len(tokens) or tokens[index + 1].type != "inline":
        return ""
    words = [
        _plain_text(t.children or []) for t in _INLINE.parseInline(tokens[index + 1].content, env)
    ]
    return " ".join("".join(words).split())


def _plain_text(tokens: Sequence[Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.children:  # an image: its alt text
            parts.append(_plain_text(token.children))
    return "".join(parts)


def _sections(blocks: Sequence[_Block]) -> Iterator[_Section]:
    """Groups blocks under heading paths; the path stack pops every heading at the new one's
    level or deeper, so a jump from H1 to H3 nests the H3 under the H1."""
    stack: list[tuple[int, str]] = []
    current = _Section((), 0, 0, 0, 0)
    for i, block in enumerate(blocks):
        if block.kind != _HEADING:
            current.stop = i + 1
            continue
        while stack and stack[-1][0] >= block.level:
            stack.pop()
        stack.append((block.level, block.title))
        path = tuple(title for _, title in stack)
        heading_only = current.headings > 0 and current.stop == current.first + current.headings
        if heading_only and block.level > current.level:
            current.path, current.level = path, block.level
            current.headings += 1
            current.stop = i + 1
            continue
        if current.stop > current.first:
            yield current
        current = _Section(path, i, i + 1, block.level, 1)
    if current.stop > current.first:
        yield current


class _Chunker:
    """Cuts sections into pieces of at most `max_chars`, with the file-wide facts packing
    needs precomputed per line: where a break may fall, which lines an overlap may copy."""

    def __init__(
        self,
        lines: _Lines,
        blocks: Sequence[_Block],
        tokens: Sequence[Token],
        chunking: ChunkingConfig,
    ) -> None:
        self.lines = lines
        self.blocks = blocks
        self.max_chars = chunking.max_chars
        self.overlap_chars = chunking.overlap_chars
        n = len(lines.lines)
        self.block_of_line = [0] * n
        for index, block in enumerate(blocks):
            self.block_of_line[block.start : block.end] = [index] * (block.end - block.start)
        self.no_overlap = [False] * n
        code = [0] * n
        table = [0] * n
        nested_starts: set[int] = set()
        for token in tokens:
            if token.map is None or token.nesting < 0:
                continue
            start, end = token.map[0], min(token.map[1], n)
            if token.level > 0:
                nested_starts.add(start)
            if token.type in _NO_OVERLAP_TOKENS:
                self.no_overlap[start:end] = [True] * max(end - start, 0)
            if token.type in _CODE_BLOCKS:
                code[start:end] = [1] * max(end - start, 0)
            elif token.type == "table_open":
                table[start:end] = [1] * max(end - start, 0)
        self.code_before = _prefix_sums(code)
        self.table_before = _prefix_sums(table)
        self.rank = self._break_ranks(nested_starts)

    def _break_ranks(self, nested_starts: set[int]) -> list[int | None]:
        """rank[i]: how good a break between lines i-1 and i is; None where none may fall."""
        lines = self.lines
        rank: list[int | None] = [None] * (len(lines.lines) + 1)
        for previous, block in zip(self.blocks, self.blocks[1:], strict=False):
            rank[block.start] = _AFTER_HEADING if previous.kind == _HEADING else _BLOCK
        for block in self.blocks:
            if block.kind == _HEADING or lines.size(block.start, block.end) <= self.max_chars:
                continue
            for i in range(block.start + 1, block.end):
                before = lines.lines[i - 1].rstrip().rstrip(_CLOSERS)
                nice = not before or before.endswith(_SENTENCE_ENDS) or i in nested_starts
                rank[i] = _SENTENCE if nice else _LINE
        return rank

    def pieces(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The section's chunks as trimmed line ranges, in order."""
        begin = low = start
        while low < end:
            stop = self._best_break(begin, low, end)
            if stop is None and begin < low:  # the overlap leaves no room: drop it
                begin = low
                stop = self._best_break(begin, low, end)
            if stop is None:
                stop = self._first_break(low, end)
            a, b = self.lines.trim(begin, stop)
            if a < b and b > low:
                yield a, b
                begin = self._overlap_start(a, stop)
            else:
                begin = stop
            low = stop

    def _best_break(self, begin: int, low: int, end: int) -> int | None:
        """Where the piece from `begin` should end, after `low`: the farthest fitting break of
        the best rank that fills at least half a chunk (a better break this early would leave
        a stub), else the farthest fitting break; right after a heading only as a last resort."""
        best: list[int | None] = [None, None, None, None]
        for i in range(low + 1, end + 1):
            rank = _BLOCK if i == end else self.rank[i]
            if rank is None:
                continue
            if self.lines.size(begin, i) > self.max_chars:
                break
            best[rank] = i
        cuts = [stop for stop in best[:_AFTER_HEADING] if stop is not None]
        for stop in cuts:
            if 2 * self.lines.size(begin, stop) >= self.max_chars:
                return stop
        return max(cuts) if cuts else best[_AFTER_HEADING]

    def _first_break(self, low: int, end: int) -> int:
        """Where an uncuttable overlong piece (one line, one heading) has to end."""
        for i in range(low + 1, end):
            if self.rank[i] is not None:
                return i
        return end

    def _overlap_start(self, first: int, stop: int) -> int:
        """Where the next piece starts: the trailing whole prose lines of the piece first..stop
        that fit `overlap_chars`, never the whole piece."""
        start = stop
        while (
            start - 1 > first
            and not self.no_overlap[start - 1]
            and self.lines.size(start - 1, stop) <= self.overlap_chars
        ):
            start -= 1
        return start if self.lines.size(start, stop) > 0 else stop

    def kind(self, a: int, b: int) -> ChunkKind:
        first, last = self.block_of_line[a], self.block_of_line[b - 1]
        body = [block.kind for block in self.blocks[first : last + 1] if block.kind != _HEADING]
        if body and all(kind in _CODE_BLOCKS for kind in body):
            return "code"
        if body and all(kind == _TABLE for kind in body):
            return "table"
        if self.code_before[b] > self.code_before[a] or self.table_before[b] > self.table_before[a]:
            return "mixed"
        return "prose"


def _prefix_sums(flags: Sequence[int]) -> list[int]:
    sums = [0] * (len(flags) + 1)
    for i, flag in enumerate(flags):
        sums[i + 1] = sums[i] + flag
    return sums
