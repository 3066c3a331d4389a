"""Two more markdown corpora for the section-heading retrieval benchmark, made offline.

The Rust book alone could reward a change tuned to one corpus (issue 21), so these write two
more from what any machine with this venv has, deterministically (same Python and installed
packages, same files), for `retrieval.build_benchmark` to label the same way:

- `pydoc_topics`: the standard library's `pydoc_data.topics.topics`, the language and library
  reference sections `help()` shows. Topics whose body is contained in a longer one ("if" in
  "compound") are dropped, so no section has a copy elsewhere that would count as a miss. The
  rest are grouped by the reference chapter they come from, one file per chapter (`# Python
  reference: <chapter>`), each topic's title an H2 and its own headings below it.
- `package_docs`: the .md and .rst files inside the installed packages (site-packages, outside
  tests, vendored code, hidden and metadata folders; no LICENSE/CHANGELOG-like files), then
  each distribution's long description (its PyPI README, markdown or reST) from its metadata;
  identical texts once, short ones (< `MIN_DOC_CHARS`) left out, `MAX_TOTAL_CHARS` in all.
  Changelog sections inside them ("Changelog", "4.55.0 (released 2024-11-14)") are cut, as
  their headings say nothing a search could match, and neat's own README is left out, so the
  corpus does not change with this project's documentation.

reST and pydoc's plain text mark headings by underlines (and overlines); markdown only knows
ATX (`## Title`) and two setext levels, and the labelling rewrites one heading line, so
underlined headings become ATX headings with levels by the order their adornment first appears
(as reST assigns them), and setext headings in markdown files become ATX too.

    python benchmarks/retrieval_corpora.py pydoc_topics|package_docs OUT_DIR
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from latency_corpus import _SKIP_DIR_NAMES, _site_packages
from markdown_it import MarkdownIt

__all__ = [
    "BUILDERS",
    "MAX_TOTAL_CHARS",
    "drop_changelogs",
    "markdown_setext_to_atx",
    "rst_headings_to_atx",
    "write_package_docs",
    "write_pydoc_topics",
]

MIN_DOC_CHARS = 500
MAX_TOTAL_CHARS = 4_000_000
MAX_DOC_CHARS = 300_000
# reST section adornment characters (docutils accepts any of these).
_ADORNMENT = set("=-`:.'\"~^_*+#<>!$%&,/;?@[\\]{|}")
_NOT_DOCS = re.compile(
    r"licen[cs]e|copying|change|history|news|authors|contribut|notice|security|conduct|"
    r"release|credits|thanks",
    re.I,
)
# Headings of changelog sections: their names, or a version number first.
_CHANGELOG = re.compile(
    r"^(change ?log|changes|history|release notes|release history|news|what'?s new)\b"
    r"|^v?\d+\.\d+",
    re.I,
)
# Distributions whose README is not an outside corpus: the project under test.
_OWN = frozenset({"neat"})
_SKIP_DIRS = _SKIP_DIR_NAMES | {"build", "dist", "node_modules", "site", "_build", "env", "venv"}
_RST_LINK = re.compile(r"`([^`<]*?)\s*<[^>`]*>`_{1,2}")
_MD = MarkdownIt("commonmark")

# pydoc topic -> the reference chapter it is taken from (Python 3.11's topics; a topic not
# listed, as newer Pythons add some, goes to "other").
_CHAPTERS: dict[str, tuple[str, ...]] = {
    "lexical analysis": (
        "identifiers",
        "id-classes",
        "strings",
        "integers",
        "floating",
        "imaginary",
        "numbers",
    ),
    "data model": (
        "objects",
        "types",
        "specialnames",
        "customization",
        "attribute-access",
        "callable-types",
        "numeric-types",
        "sequence-types",
        "context-managers",
    ),
    "execution model": ("execmodel", "naming", "dynamic-features", "exceptions"),
    "expressions": (
        "atom-identifiers",
        "atom-literals",
        "attribute-references",
        "subscriptions",
        "slicings",
        "calls",
        "await",
        "power",
        "unary",
        "binary",
        "shifting",
        "bitwise",
        "comparisons",
        "in",
        "booleans",
        "lambda",
        "exprlists",
        "operator-summary",
        "conversions",
    ),
    "simple statements": (
        "assert",
        "assignment",
        "augassign",
        "pass",
        "del",
        "return",
        "yield",
        "raise",
        "break",
        "continue",
        "import",
        "global",
        "nonlocal",
    ),
    "compound statements": (
        "compound",
        "if",
        "else",
        "while",
        "for",
        "try",
        "with",
        "function",
        "class",
        "async",
    ),
    "built-in types": (
        "truth",
        "typesseq",
        "typesseq-mutable",
        "string-methods",
        "formatstrings",
        "typesmapping",
        "dict",
        "lists",
        "typesmodules",
        "typesfunctions",
        "typesmethods",
        "bltin-code-objects",
        "bltin-type-objects",
        "bltin-null-object",
        "bltin-ellipsis-object",
        "specialattrs",
    ),
    "debugger": ("debugger",),
}


def rst_headings_to_atx(text: str, offset: int = 0) -> str:
    """`text` with reST-style headings (a title line under an overline and/or over an
    underline of one adornment character, at least as long as the title) as ATX headings.
    Levels follow the order each style (character, overlined or not) first appears, plus
    `offset`; adornment lines become blank so line numbers stay those of the input. Other
    lines starting with `#` are escaped, as markdown would read them as headings."""
    lines = text.replace("\r\n", "\n").split("\n")
    styles: list[tuple[str, bool]] = []
    out = list(lines)
    i = 0
    while i < len(lines):
        over = _adornment(lines[i])
        if (
            over
            and i + 2 < len(lines)
            and _title(lines[i + 1])
            and _adornment(lines[i + 2]) == over
            and len(lines[i]) >= len(lines[i + 1].strip())
        ):
            out[i] = out[i + 2] = ""
            out[i + 1] = _atx(lines[i + 1], _level(styles, (over, True), offset))
            i += 3
            continue
        under = _adornment(lines[i + 1]) if i + 1 < len(lines) else None
        if (
            under
            and _title(lines[i])
            and (i == 0 or not lines[i - 1].strip())
            and len(lines[i + 1].rstrip()) >= len(lines[i].rstrip())
        ):
            out[i] = _atx(lines[i], _level(styles, (under, False), offset))
            out[i + 1] = ""
            i += 2
            continue
        stripped = lines[i].lstrip()
        if stripped.startswith("#") and len(lines[i]) - len(stripped) < 4:
            out[i] = lines[i][: len(lines[i]) - len(stripped)] + "\\" + stripped
        i += 1
    return "\n".join(out)


def _adornment(line: str) -> str | None:
    """The character of an adornment line (`=====`), else None."""
    line = line.rstrip()
    if len(line) >= 2 and line[0] in _ADORNMENT and line == line[0] * len(line):
        return line[0]
    return None


def _title(line: str) -> bool:
    return bool(line.strip()) and not line[0].isspace() and _adornment(line) is None


def _level(styles: list[tuple[str, bool]], style: tuple[str, bool], offset: int) -> int:
    if style not in styles:
        styles.append(style)
    return min(6, styles.index(style) + 1 + offset)


def _atx(title: str, level: int) -> str:
    """An ATX heading; reST links keep their text only, ``literals`` become `code`, so a
    query made of the title does not carry URLs."""
    title = _RST_LINK.sub(r"\1", title).replace("``", "`")
    return f"{'#' * level} {' '.join(title.split())}"


def markdown_setext_to_atx(text: str) -> str:
    """`text` with its top-level setext headings (`Title` over `===` or `---`) as ATX ones,
    the underline blank: the benchmark relabels a heading by rewriting its one line."""
    lines = text.replace("\r\n", "\n").split("\n")
    tokens = _MD.parse(text)
    for token in tokens:
        if token.type == "heading_open" and token.level == 0 and token.markup in ("=", "-"):
            assert token.map is not None
            first, stop = token.map
            title = " ".join(" ".join(lines[first : stop - 1]).split())
            lines[first] = f"{'#' * int(token.tag[1:])} {title}"
            for j in range(first + 1, stop):
                lines[j] = ""
    return "\n".join(lines)


def drop_changelogs(text: str) -> str:
    """`text` without the sections (to the next heading of the same or a higher level) whose
    heading names a changelog or starts with a version number."""
    lines = text.split("\n")
    headings = [
        (t.map[0], int(t.tag[1:]), tokens[i + 1].content.strip())
        for tokens in [_MD.parse(text)]
        for i, t in enumerate(tokens)
        if t.type == "heading_open" and t.level == 0 and t.map is not None
    ]
    drop: set[int] = set()
    for j, (line, level, title) in enumerate(headings):
        if _CHANGELOG.search(title):
            end = next((h for h, lv, _ in headings[j + 1 :] if lv <= level), len(lines))
            drop.update(range(line, end))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def write_pydoc_topics(out: Path) -> list[Path]:
    """Write the pydoc topics under `out`, one markdown file per reference chapter."""
    from pydoc_data.topics import topics

    kept = _uncontained({name: text.strip() for name, text in topics.items()})
    chapter_of = {topic: chapter for chapter, names in _CHAPTERS.items() for topic in names}
    order = {topic: i for i, topic in enumerate(chapter_of)}
    groups: dict[str, list[str]] = {}
    for name in sorted(kept, key=lambda n: (order.get(n, len(order)), n)):
        groups.setdefault(chapter_of.get(name, "other"), []).append(name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, (chapter, names) in enumerate(groups.items(), 1):
        parts = [f"# Python reference: {chapter}"]
        parts += [rst_headings_to_atx(kept[name], offset=1) for name in names]
        path = out / f"{number:02d}-{chapter.replace(' ', '-')}.md"
        path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _uncontained(texts: dict[str, str]) -> dict[str, str]:
    """`texts` less those whose body (below the title's two lines) occurs in a longer kept one,
    longest first so of two copies the larger context stays."""
    kept: dict[str, str] = {}
    flat: list[str] = []
    for name in sorted(texts, key=lambda n: (-len(texts[n]), n)):
        body = " ".join(texts[name].split("\n", 2)[-1].split())
        if not any(body in other for other in flat):
            kept[name] = texts[name]
            flat.append(" ".join(texts[name].split()))
    return kept


def write_package_docs(out: Path, max_chars: int = MAX_TOTAL_CHARS) -> list[Path]:
    """Write the installed packages' docs under `out`: `packages/` for their .md/.rst files,
    `readmes/` for the distributions' long descriptions, in that (sorted) order."""
    seen: set[str] = set()
    written: list[Path] = []
    total = 0
    for rel, markdown in [*_package_files(), *_readmes()]:
        text = drop_changelogs(markdown)
        key = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
        if key in seen or len(text.strip()) < MIN_DOC_CHARS or len(text) > MAX_DOC_CHARS:
            continue
        if total + len(text) > max_chars:
            break
        seen.add(key)
        total += len(text)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _package_files() -> Iterator[tuple[str, str]]:
    """(output path, markdown) of the .md/.rst files under site-packages, by relative path."""
    root = _site_packages()
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP_DIRS
            and not d.endswith((".dist-info", ".egg-info"))
            and not d.startswith(".")
        )
        for name in files:
            if name.endswith((".md", ".rst")) and not _NOT_DOCS.search(name):
                found.append((Path(folder) / name).relative_to(root).as_posix())
    for rel in sorted(found):
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        flat = rel.replace("/", "__")
        if rel.endswith(".rst"):
            yield f"packages/{flat}.md", rst_headings_to_atx(text)
        else:
            yield f"packages/{flat}", markdown_setext_to_atx(text)


def _readmes() -> Iterator[tuple[str, str]]:
    """(output path, markdown) of each installed distribution's long description, by name;
    ones without a markdown or reST content type (plain text by default) are left out."""
    by_name: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name and name not in _OWN:
            by_name.setdefault(name, dist)
    for name in sorted(by_name):
        meta = by_name[name].metadata
        kind = (meta.get_all("Description-Content-Type") or [""])[0].split(";")[0].strip().lower()
        body = meta.get_payload() if hasattr(meta, "get_payload") else None
        if not isinstance(body, str) or not body.strip():
            continue
        if kind == "text/markdown":
            yield f"readmes/{name}.md", markdown_setext_to_atx(body)
        elif kind == "text/x-rst":
            yield f"readmes/{name}.rst.md", rst_headings_to_atx(body)


BUILDERS = {"pydoc_topics": write_pydoc_topics, "package_docs": write_package_docs}


def main(argv: Sequence[str]) -> None:
    if len(argv) != 2 or argv[0] not in BUILDERS:
        raise SystemExit(f"usage: python {sys.argv[0]} {'|'.join(BUILDERS)} OUT_DIR")
    files = BUILDERS[argv[0]](Path(argv[1]))
    chars = sum(p.stat().st_size for p in files)
    print(f"{len(files)} files, {chars / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
