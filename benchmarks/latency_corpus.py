"""An offline 10,000-document corpus for query latency: documentation this machine already has.

Documents, in this fixed order, deduplicated by their text:

1. the standard library's pydoc topics (`pydoc_data.topics.topics`), one document per topic;
2. the .md/.rst/.txt files of the packages installed next to neat (site-packages), outside
   tests, metadata folders and data files (mostly digits, or over 64 KB);
3. docstrings of at least `MIN_DOCSTRING_CHARS` read with `ast` (nothing is imported) from the
   .py files of the standard library and of each installed package, one document per module,
   class or function, titled with its dotted name; the sources are taken round-robin (stdlib,
   then packages by name), one docstring each per turn, so no single package fills the corpus.

Each document is one markdown file `NNNNN.md` in folders of 500. Queries are deterministic:
for every `len(docs) // queries`-th document, its first sentence (up to `QUERY_WORDS` words),
or every fifth time its title, as a user would type a heading.

The corpus depends only on the Python and the packages installed, so two runs on one venv give
the same files and queries (the figures name the corpus size and its sha256).

    python benchmarks/latency_corpus.py OUT_DIR   # writes it and prints its size and digest
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import re
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DOCUMENTS",
    "LatencyCorpus",
    "build_latency_corpus",
    "cached_corpus_texts",
    "corpus_texts",
    "make_queries",
]

DOCUMENTS = 10_000
CACHE_ENV = "NEAT_BENCH_CACHE"
# Bump when the selection rules change, so a cached corpus is not reused.
_CORPUS_VERSION = "1"
QUERIES = 1_000
QUERY_WORDS = 12
MIN_DOCSTRING_CHARS = 300
MAX_FILE_BYTES = 64 * 1024
PER_FOLDER = 500
DOC_SUFFIXES = (".md", ".rst", ".txt")
_SKIP_DIR_NAMES = frozenset(
    {"tests", "test", "testing", "_vendor", "vendor", "__pycache__", "site-packages", "idlelib"}
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_'-]*")
_SENTENCE = re.compile(r"(.+?[.!?:])(?:\s|$)", re.S)


@dataclass(frozen=True, slots=True)
class LatencyCorpus:
    """The written corpus: its folder, one file per document (in order), the queries, and a
    sha256 over every document's text that names this exact corpus in reports."""

    root: Path
    files: list[Path]
    texts: list[str]
    queries: list[str]
    digest: str


def corpus_texts(size: int = DOCUMENTS) -> list[str]:
    """The documents' markdown texts, in order, at most `size` of them."""
    seen: set[str] = set()
    texts: list[str] = []

    def add(text: str) -> bool:
        key = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
        if key not in seen and text.strip():
            seen.add(key)
            texts.append(text)
        return len(texts) >= size

    for text in _pydoc_topics():
        if add(text):
            return texts
    for text in _doc_files():
        if add(text):
            return texts
    sources = [_docstrings(root, prefix) for root, prefix in _python_sources()]
    while sources:
        alive = []
        for source in sources:
            text = next(source, None)
            if text is None:
                continue
            alive.append(source)
            if add(text):
                return texts
        sources = alive
    return texts


def cached_corpus_texts(size: int = DOCUMENTS) -> list[str]:
    """`corpus_texts`, kept in a JSON file under `CACHE_ENV` (default ~/.cache/neat-bench)
    keyed by the Python and every installed distribution's version: reading all those
    sources with `ast` takes over a minute, and they change only when the venv does."""
    folder = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "neat-bench")
    path = folder / f"latency-corpus-{size}-{_environment_key()}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, list) and all(isinstance(t, str) for t in cached):
            return cached
    except (OSError, ValueError):
        pass
    texts = corpus_texts(size)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(texts), encoding="utf-8")
    os.replace(scratch, path)
    return texts


def _environment_key() -> str:
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    payload = "\n".join([sys.version, _CORPUS_VERSION, *dists])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_latency_corpus(out: Path, size: int = DOCUMENTS, queries: int = QUERIES) -> LatencyCorpus:
    """Write the corpus under `out` (an existing folder is overwritten file by file)."""
    texts = cached_corpus_texts(size)
    files: list[Path] = []
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        path = out / f"{i // PER_FOLDER:03d}" / f"{i:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files.append(path)
        digest.update(text.encode())
        digest.update(b"\0")
    return LatencyCorpus(out, files, texts, make_queries(texts, queries), digest.hexdigest())


def make_queries(texts: Sequence[str], count: int) -> list[str]:
    """Deterministic queries: every n-th document's first sentence, every fifth its title."""
    step = max(1, len(texts) // max(1, count))
    found: list[str] = []
    for i in range(0, len(texts), step):
        title, body = _title_and_body(texts[i])
        source = title if len(found) % 5 == 4 and title else _first_sentence(body) or title
        words = _WORD.findall(source)[:QUERY_WORDS]
        if words:
            found.append(" ".join(words))
        if len(found) == count:
            break
    return found


def _title_and_body(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if first.startswith("# "):
        return first[2:].replace(".", " ").replace("_", " ").strip(), rest
    return "", text


def _first_sentence(text: str) -> str:
    flat = " ".join(line for line in text.split("\n") if not line.lstrip().startswith(("#", "=")))
    flat = " ".join(flat.split())
    match = _SENTENCE.match(flat)
    return match.group(1) if match else flat[:200]


def _pydoc_topics() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"# {name}\n\n{topics[name].strip()}\n"


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _doc_files() -> Iterator[str]:
    root = _site_packages()
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP_DIR_NAMES
            and not d.endswith((".dist-info", ".egg-info", "data"))
            and not d.startswith(".")
        )
        for name in files:
            if name.endswith(DOC_SUFFIXES):
                path = Path(folder) / name
                found.append((path.relative_to(root).as_posix(), path))
    for rel, path in sorted(found):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if len(data) > MAX_FILE_BYTES:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        letters = sum(c.isalpha() for c in text)
        if letters < 0.4 * len(text) or len(text) < 200:  # number tables, stubs
            continue
        yield f"# {rel}\n\n{text.strip()}\n"


def _python_sources() -> list[tuple[Path, str]]:
    """(folder, dotted prefix) of the standard library, then each installed top-level package."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [(stdlib, "")]
    site = _site_packages()
    for entry in sorted(site.iterdir()):
        named = entry.name.isidentifier() and not entry.name.startswith("_")
        if named and (entry / "__init__.py").is_file():
            sources.append((entry, entry.name + "."))
    return sources


def _docstrings(root: Path, prefix: str) -> Iterator[str]:
    for rel, path in _python_files(root):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        module = prefix + ".".join(Path(rel).with_suffix("").parts).removesuffix(".__init__")
        for name, doc in _tree_docstrings(tree, module.strip(".")):
            if len(doc) >= MIN_DOCSTRING_CHARS:
                yield f"# {name}\n\n{doc}\n"


def _python_files(root: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP_DIR_NAMES and d.isidentifier() and not d.startswith(("_", "."))
        )
        for name in files:
            if name.endswith(".py") and (name == "__init__.py" or not name.startswith("_")):
                path = Path(folder) / name
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _tree_docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str]]:
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc
    stack: list[tuple[str, ast.AST]] = [(module, tree)]
    while stack:
        scope, node = stack.pop(0)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                if child.name.startswith("_"):
                    continue
                name = f"{scope}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    yield name, doc
                if isinstance(child, ast.ClassDef):
                    stack.append((name, child))


def main(argv: Sequence[str]) -> None:
    if not argv:
        raise SystemExit("usage: python benchmarks/latency_corpus.py OUT_DIR")
    corpus = build_latency_corpus(Path(argv[0]))
    chars = sum(len(t) for t in corpus.texts)
    print(
        f"{len(corpus.files)} documents, {chars / 1e6:.1f} M characters, "
        f"{len(corpus.queries)} queries, sha256 {corpus.digest[:16]}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
