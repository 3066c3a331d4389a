"""`MarkdownIndexer`: keeps a SQLite index of markdown trees current and searches it.

A build plans, then embeds, then commits, so that a crash at any point leaves the index
consistent:

1. scan the paths; a file whose (size, mtime_ns) equals its manifest entry is unchanged;
2. otherwise read it and hash it; equal sha256 only refreshes the stat (a touch is no edit);
3. parse and chunk it, embed only chunk contents that have no stored vector, and only then
   replace the file's rows in one transaction (nothing durable is written before the
   embeddings exist, so a failed embed never marks a file as done);
4. deleted files are the manifest's paths under the built paths minus those found on disk,
   an explicit set difference that no batching can miss;
5. chunks still lacking a vector (a new or changed embedder, an interrupted run) are
   embedded, and vectors no chunk references are deleted.

A change of chunking (`CHUNKER_VERSION` or `indexing.chunking`) re-chunks every file on the
next build: each manifest entry records the chunking that produced it. With an embedder
that states a token limit, a chunk over it is embedded in pieces that fit, its vector their
mean (`neat.indexing.token_limit`); the chunk itself stays whole, for BM25. A change
of embedder (its fingerprint differs from the one stored) drops every vector and re-embeds
all chunks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import numpy as np

from neat.config.indexing import ChunkingConfig, IndexingConfig
from neat.errors import ConfigError, DataError
from neat.indexing.embedders import embedder_fingerprint
from neat.indexing.fusion import convex_fusion, reciprocal_rank_fusion
from neat.indexing.integrity import check_index, stat_unchanged
from neat.indexing.markdown import parse_markdown
from neat.indexing.records import (
    CHUNKER_VERSION,
    Chunk,
    ChunkKind,
    FileRecord,
    ParsedFile,
    search_text,
)
from neat.indexing.rerank import CrossEncoderReranker, build_reranker
from neat.indexing.scan import ScannedFile, content_skip_reason, scan
from neat.indexing.store import (
    ChunkRow,
    FileRow,
    IndexStore,
    RootRow,
    compact_snippet,
    posix_rel,
)
from neat.indexing.token_limit import (
    FitReport,
    TokenLimit,
    embed_whole,
    embedding_pieces,
    token_limit,
)
from neat.indexing.vectors import VectorIndex
from neat.interfaces import Document, IEmbedder, SearchHit

__all__ = ["MarkdownIndexer", "chunker_key"]

SEARCH_MODES = ("bm25", "dense", "hybrid")
# Files parsed before their new chunk texts are embedded together and written.
_FLUSH_FILES = 64
_FLUSH_TEXTS = 256
_EMBED_BATCH = 256

FileKey = tuple[int, str]  # (root id, path relative to the root's folder)
Progress = Callable[[int, int], None]  # (files checked, files in all)


def chunker_key(chunking: ChunkingConfig) -> str:
    """Names the chunking that produced a file's chunks; a different key re-chunks the file.
    The embedder is not part of it: long chunks are embedded in pieces, never stored split."""
    return f"{CHUNKER_VERSION}/{chunking.max_chars}/{chunking.overlap_chars}"


@dataclass(slots=True)
class BuildReport:
    """What one build did (`as_dict` is what `build` returns)."""

    files_seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)  # {"path", "detail"}
    chunks_added: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    # Chunks over the embedder's token limit split into pieces that fit, and pieces that
    # still do not (one unbreakable run of text) and are embedded truncated.
    chunks_split: int = 0
    chunks_truncated: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    generation: int = 0

    def skip(self, reason: str, path: Path | str) -> None:
        self.skipped.setdefault(reason, []).append(str(path))

    def as_dict(self) -> dict[str, Any]:
        report = asdict(self)
        report["skipped"] = {k: sorted(v) for k, v in sorted(self.skipped.items())}
        return report


@dataclass(slots=True)
class _Parsed:
    """A changed file, parsed and waiting for its embeddings before it is written."""

    key: FileKey
    row: FileRow
    parsed: ParsedFile
    is_new: bool


@dataclass(frozen=True, slots=True)
class _Target:
    """One built path: the root that stores it, the path's key prefix below the root's
    folder ("" for the whole root), and whether it is still on disk."""

    path: Path
    root: RootRow
    prefix: str
    exists: bool

    def covers(self, rel: str) -> bool:
        return not self.prefix or rel == self.prefix or rel.startswith(self.prefix + "/")


class MarkdownIndexer:
    """Implements IDocumentIndexer over one SQLite database (`neat.indexing.store`).

    Builds take an exclusive writer lock (`IndexLockedError` for a second writer); search,
    stats and documents read a consistent snapshot without blocking. Paths in results are
    absolute; chunk records keep their path relative to the indexed root.
    """

    def __init__(
        self,
        db: Path,
        config: IndexingConfig,
        *,
        embedder: IEmbedder | None = None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        # `indexing.rerank` is built on the first search that re-ranks, so a build (or a bad
        # path) never loads the cross-encoder; an explicit `reranker` wins over the config.
        self._reranker = reranker
        self._store = IndexStore(Path(db))
        self.db = self._store.db
        self._limit: tuple[TokenLimit | None] | None = None  # asked of the embedder once
        self._dense: tuple[int, VectorIndex] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> MarkdownIndexer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _chunker(self) -> str:
        return chunker_key(self.config.chunking)

    @property
    def _token_limit(self) -> TokenLimit | None:
        """The embedder's, asked on first use: it loads the model (a bm25 search never does)."""
        if self._limit is None:
            self._limit = (token_limit(self.embedder),)
        return self._limit[0]

    @property
    def generation(self) -> int:
        """Grows with every committed change of the indexed content or vectors."""
        return self._store.generation

    # -- build -------------------------------------------------------------------------------------

    def build(
        self, paths: Sequence[Path] = (), *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Bring the index in line with `paths` (default: `indexing.paths`); the report
        counts files added, updated, unchanged, removed and skipped (reason -> paths).
        `progress(done, total)` is called as files are checked, first with done = 0."""
        started = time.perf_counter()
        report = BuildReport()
        with self._store.writer():
            targets = self._targets(paths)
            self._sync_embedder()
            manifests = {t.root.id: self._store.manifest(t.root.id) for t in targets}
            found = self._scan(targets, report)
            kept = self._update_files(found, manifests, report, progress)
            in_scope = {
                (t.root.id, rel) for t in targets for rel in manifests[t.root.id] if t.covers(rel)
            }
            self._remove_files(sorted(in_scope - kept), report)
            for target in targets:
                if not target.exists:
                    self._store.drop_root_if_empty(target.root)
            self._fill_vectors(report)
            self._store.collect_vectors()
            report.seconds = round(time.perf_counter() - started, 4)
            report.generation = self._store.generation
            self._record_build(report)
        return report.as_dict()

    def _targets(self, paths: Sequence[Path]) -> list[_Target]:
        """Each path with the root that stores it. Roots are created for all existing paths
        first, as a new root can fold an earlier one into it."""
        given = [Path(p).expanduser().resolve() for p in (paths or self.config.paths)]
        if not given:
            raise ConfigError("nothing to index: pass paths to build, or set indexing.paths")
        for path in given:
            if path.exists():
                self._store.ensure_root(path, "dir" if path.is_dir() else "file")
        targets = []
        for path in dict.fromkeys(given):
            root = self._store.find_root(path)
            if root is None:
                raise DataError(
                    f"indexing path {path} does not exist and was never indexed; fix the path "
                    "or remove it from indexing.paths"
                )
            prefix = "" if path == root.base else posix_rel(path, root.base)
            targets.append(_Target(path, root, prefix, path.exists()))
        return targets

    def _scan(self, targets: Sequence[_Target], report: BuildReport) -> dict[FileKey, ScannedFile]:
        found: dict[FileKey, ScannedFile] = {}
        for target in targets:
            if not target.exists:
                continue
            result = scan([target.path], self.config)
            for reason, skipped in result.skipped.items():
                for path in skipped:
                    report.skip(reason, path)
            for file in result.files:
                found[(target.root.id, posix_rel(file.path, target.root.base))] = file
        report.files_seen = len(found)
        return found

    def _update_files(
        self,
        found: dict[FileKey, ScannedFile],
        manifests: dict[int, dict[str, FileRow]],
        report: BuildReport,
        progress: Progress | None = None,
    ) -> set[FileKey]:
        """Re-index what changed; returns the keys that stay in the index."""
        kept: set[FileKey] = set()
        pending: list[_Parsed] = []
        total = len(found)
        for done, (key, file) in enumerate(sorted(found.items(), key=lambda item: item[1].path)):
            if progress is not None:
                progress(done, total)
            outcome = self._parse_if_changed(key, file, manifests[key[0]].get(key[1]), report)
            if outcome == "skipped":  # no longer indexable: an old entry is removed
                continue
            kept.add(key)
            if outcome == "unchanged":
                continue
            pending.append(outcome)
            if len(pending) >= _FLUSH_FILES or _chunk_count(pending) >= _FLUSH_TEXTS:
                self._write(pending, report)
                pending = []
        self._write(pending, report)
        if progress is not None:
            progress(total, total)
        return kept

    def _parse_if_changed(
        self, key: FileKey, file: ScannedFile, known: FileRow | None, report: BuildReport
    ) -> _Parsed | Literal["unchanged", "skipped"]:
        """The parsed file when its content (or the chunking) changed; "skipped" when it
        cannot be read as UTF-8 text (the reason goes to `report.skipped`)."""
        # Only an entry chunked the current way can stand; any other is re-chunked.
        fresh = known if known is not None and known.chunker == self._chunker else None
        if fresh is not None and stat_unchanged(fresh, file):
            report.unchanged += 1
            return "unchanged"
        try:
            data = file.path.read_bytes()
        except FileNotFoundError:
            report.skip("vanished", file.path)
            return "skipped"
        except OSError:
            report.skip("unreadable", file.path)
            return "skipped"
        report.bytes_read += len(data)
        reason = content_skip_reason(data)
        if reason is not None:
            report.skip(reason, file.path)
            return "skipped"
        sha = hashlib.sha256(data).hexdigest()
        if fresh is not None and fresh.sha256 == sha:
            self._store.touch_file(key[0], key[1], file.size, file.mtime_ns)
            report.unchanged += 1
            return "unchanged"
        text = data.decode("utf-8")
        row = FileRow(key[0], key[1], file.size, file.mtime_ns, sha, self._chunker, 0)
        parsed = parse_markdown(text, key[1], self.config.chunking)
        report.warnings += [{"path": str(file.path), "detail": w} for w in parsed.warnings]
        return _Parsed(key, row, parsed, is_new=known is None)

    def _write(self, pending: Sequence[_Parsed], report: BuildReport) -> None:
        """Embed the new chunk texts of `pending`, then write each file in its own
        transaction."""
        if not pending:
            return
        vectors: dict[str, bytes] = {}
        if self.embedder is not None:
            texts = {
                c.content_hash: (c.heading_path, c.text) for p in pending for c in p.parsed.chunks
            }
            have = self._store.vector_hashes(texts)
            todo = {h: t for h, t in texts.items() if h not in have}
            vectors = self._embed(todo, report)
            report.embedded += len(vectors)
        for item in pending:
            chunks = item.parsed.chunks
            mine = {
                c.content_hash: vectors[c.content_hash] for c in chunks if c.content_hash in vectors
            }
            report.chunks_removed += self._store.replace_file(
                item.key[0], item.row, item.parsed.front_matter, item.parsed.body, chunks, mine
            )
            report.chunks_added += len(chunks)
            if item.is_new:
                report.added += 1
            else:
                report.updated += 1

    def _remove_files(self, keys: Sequence[FileKey], report: BuildReport) -> None:
        for root_id, rel in keys:
            report.chunks_removed += self._store.remove_file(root_id, rel)
            report.removed += 1

    # -- embeddings --------------------------------------------------------------------------------

    def _sync_embedder(self) -> None:
        """Vectors of another model are void: drop them all (re-embedded by this build)."""
        if self.embedder is None:
            return
        fingerprint = embedder_fingerprint(self.embedder)
        if self._store.get_meta("embedder") != fingerprint:
            self._store.reset_vectors(fingerprint, self.embedder.dim)
            self._dense = None

    def _embed(
        self, passages: dict[str, tuple[tuple[str, ...], str]], report: BuildReport
    ) -> dict[str, bytes]:
        """content hash -> float32 vector bytes of each (heading path, text); one over the
        embedder's token limit is embedded in pieces, pooled (`neat.indexing.token_limit`)."""
        assert self.embedder is not None
        out: dict[str, bytes] = {}
        items = list(passages.items())
        fit = FitReport()
        for start in range(0, len(items), _EMBED_BATCH):
            part = items[start : start + _EMBED_BATCH]
            pieces = embedding_pieces([p for _, p in part], self._token_limit, fit)
            matrix = embed_whole(pieces, self.embedder.embed, self.embedder.dim).astype("<f4")
            out.update((h, row.tobytes()) for (h, _), row in zip(part, matrix, strict=True))
        report.chunks_split += fit.split
        report.chunks_truncated += fit.truncated
        return out

    def _fill_vectors(self, report: BuildReport) -> None:
        """Embed chunks that have no vector yet (new embedder, interrupted run)."""
        if self.embedder is None:
            return
        while rows := self._store.chunks_without_vectors(_EMBED_BATCH):
            vectors = self._embed({h: (hp, t) for h, hp, t in rows}, report)
            self._store.put_vectors(vectors)
            report.embedded += len(vectors)

    def _record_build(self, report: BuildReport) -> None:
        summary = report.as_dict()
        summary["skipped"] = {k: len(v) for k, v in summary["skipped"].items()}
        summary["warnings"] = len(summary["warnings"])
        summary["finished_at"] = time.time()
        with self._store.transaction():
            self._store.set_meta("last_build", json.dumps(summary))

    # -- search ------------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 10, mode: str | None = None, *, rerank: bool = True
    ) -> list[SearchHit]:
        """The `k` best chunks for free text. `mode` (default `indexing.mode`): "auto" (hybrid
        with an embedder, else bm25), "bm25" (FTS5), "dense" (embedder + exact inner product)
        or "hybrid" (both, merged by `indexing.fusion`: reciprocal rank fusion or a convex
        combination of scores). Any text is a valid query; one without words gives []. With
        a reranker (`indexing.rerank`, unless `rerank=False`) the mode's best max(top, k)
        chunks are re-scored by the cross-encoder and its scores returned."""
        reranker = self.reranker if rerank else None
        if reranker is None:
            return self._search(query, k, mode)
        ranked, _ = self._ranked(query, max(reranker.top, k), mode, snippets=False)
        rows = self._store.chunk_rows(i for i, _ in ranked)
        candidates = [
            (i, search_text(rows[i].heading_path, rows[i].text)) for i, _ in ranked if i in rows
        ]
        best = reranker.rerank(query, candidates)[:k]
        return self._hits(best, self._store.snippets_for(query, [i for i, _ in best]), rows)

    @property
    def reranker(self) -> CrossEncoderReranker | None:
        """The cross-encoder re-scoring searches (built from `indexing.rerank` on first use)."""
        if self._reranker is None and self.config.rerank is not None:
            self._reranker = build_reranker(self.config.rerank)
        return self._reranker

    def _search(self, query: str, k: int, mode: str | None) -> list[SearchHit]:
        ranked, snippets = self._ranked(query, k, mode)
        return self._hits(ranked, snippets)

    def _ranked(
        self, query: str, k: int, mode: str | None, *, snippets: bool = True
    ) -> tuple[list[tuple[int, float]], dict[int, str]]:
        """(chunk id, score) best first, and snippets (for the bm25-matched rows among them,
        or none with `snippets=False`) of the mode's `k` best chunks."""
        mode = mode or self.config.mode
        if mode == "auto":  # hybrid beat bm25 on the rust-book benchmark (nDCG@10 .730 vs .673)
            mode = "hybrid" if self.embedder is not None else "bm25"
        if mode not in SEARCH_MODES:
            raise ConfigError(
                f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)} "
                "(indexing.mode)"
            )
        if mode != "bm25":
            self._require_embedder(mode)
        if k <= 0 or not query.strip():
            return [], {}
        if mode == "bm25":
            lexical = self._store.search_bm25(query, k, snippets=snippets)
            made = {i: t for i, _, t in lexical} if snippets else {}
            return [(i, s) for i, s, _ in lexical], made
        if mode == "dense":
            return self._search_dense(query, k), {}
        depth = max(50, 5 * k)
        lexical = self._store.search_bm25(query, depth, snippets=False)
        dense = self._search_dense(query, depth)
        if self.config.fusion == "convex":
            pairs = [(i, s) for i, s, _ in lexical]
            fused = convex_fusion(pairs, dense, self.config.dense_weight)[:k]
        else:
            fused = reciprocal_rank_fusion(
                [[i for i, _, _ in lexical], [i for i, _ in dense]], k=self.config.rrf_k
            )[:k]
        if not snippets:
            return fused, {}
        matched = {i for i, _, _ in lexical}
        shown = [i for i, _ in fused if i in matched]  # snippets for these only, not all 50
        return fused, self._store.snippets_for(query, shown)

    def _require_embedder(self, mode: str) -> IEmbedder:
        if self.embedder is None:
            raise ConfigError(
                f"{mode} search needs an embedder: set indexing.embedder (a local "
                "sentence-transformers folder) and build the index with it, or use mode bm25"
            )
        return self.embedder

    def _search_dense(self, query: str, k: int) -> list[tuple[int, float]]:
        embedder = self._require_embedder("dense")
        index = self._vector_index(embedder)
        if len(index) == 0:
            return []
        vector = np.asarray(embedder.embed([query]), dtype=np.float32)[0]
        return index.search_one(vector, k)

    def _vector_index(self, embedder: IEmbedder) -> VectorIndex:
        """The in-memory index of all vectors, rebuilt from SQLite when the generation moved."""
        stored = self._store.get_meta("embedder")
        if stored != embedder_fingerprint(embedder):
            raise ConfigError(
                f"the index {self.db} holds no vectors of this embedder (it was built "
                f"{'with ' + stored if stored else 'without one'}); run `neat index build` "
                "with indexing.embedder set to embed it"
            )
        generation = self._store.generation
        if self._dense is None or self._dense[0] != generation:
            dim = int(self._store.get_meta("embedder_dim") or embedder.dim)
            ids, matrix = self._store.load_vectors(dim)
            index = VectorIndex(dim)
            index.add(ids, matrix)
            self._dense = (generation, index)
        return self._dense[1]

    def _hits(
        self,
        ranked: Sequence[tuple[int, float]],
        snippets: dict[int, str],
        rows: dict[int, ChunkRow] | None = None,
    ) -> list[SearchHit]:
        if rows is None:
            rows = self._store.chunk_rows(i for i, _ in ranked)
        return [
            _hit(rows[i], score, snippets.get(i) or compact_snippet(rows[i].text))
            for i, score in ranked
            if i in rows  # a chunk replaced between the two legs' reads
        ]

    # -- inspection --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        last = self._store.get_meta("last_build")
        return {
            "db": str(self.db),
            "roots": [str(r.path) for r in self._store.roots()],
            "files": self._store.count("files"),
            "chunks": self._store.count("chunks"),
            "bytes": self._store.total_bytes(),
            "db_bytes": self._store.db_bytes(),
            "vectors": self._store.count("vectors"),
            "embedder": self._store.get_meta("embedder"),
            "generation": self._store.generation,
            "last_build": json.loads(last) if last else None,
        }

    def files(self) -> list[FileRecord]:
        """Manifest entries with absolute paths, sorted by root then path."""
        return [
            FileRecord(str(root.base / row.path), row.size, row.mtime_ns, row.sha256)
            for root, row in self._store.all_files()
        ]

    def chunks(self, path: str | Path | None = None) -> list[Chunk]:
        """Stored chunks in file order; `path` (absolute, or relative to a root) picks one
        file. Chunk paths are relative to their root, as `parse_markdown` made them."""
        rows: list[ChunkRow] = []
        if path is None:
            rows = self._store.file_chunks()
        else:
            for root, rel in self._locate(Path(path)):
                rows.extend(self._store.file_chunks(root.id, rel))
        return [
            Chunk(r.path, r.heading_path, r.start_line, r.end_line, r.text, cast(ChunkKind, r.kind))
            for r in rows
        ]

    def _locate(self, path: Path) -> list[tuple[RootRow, str]]:
        if path.is_absolute():
            root = self._store.find_root(path.resolve())
            return [] if root is None else [(root, posix_rel(path.resolve(), root.base))]
        return [(root, path.as_posix()) for root in self._store.roots()]

    def documents(
        self, unit: Literal["file", "chunk"] = "file", *, roots: Sequence[Path] | None = None
    ) -> Iterator[Document]:
        """Training documents from one snapshot of the index, in a stable order (root, path,
        chunk). "file": the body (front matter dropped); "chunk": heading path + text. Files
        outside `roots` (when given) are left out; empty texts are never yielded."""
        if unit not in ("file", "chunk"):
            raise ConfigError(f"unknown document unit {unit!r}; use 'file' or 'chunk'")
        keep = _under(roots)
        conn = self._store.reader()
        try:
            conn.execute("BEGIN")  # one read transaction: one snapshot (WAL)
            if unit == "file":
                rows = conn.execute(
                    "SELECT r.path, r.kind, b.path, b.body, NULL, NULL, NULL FROM bodies b "
                    "JOIN roots r ON r.id = b.root_id ORDER BY r.path, b.path"
                )
            else:
                rows = conn.execute(
                    "SELECT r.path, r.kind, c.path, c.text, c.heading_path, c.start_line, "
                    "c.end_line FROM chunks c JOIN roots r ON r.id = c.root_id "
                    "ORDER BY r.path, c.path, c.ordinal"
                )
            for root, kind, rel, text, heading_json, start, end in rows:
                base = Path(root) if kind == "dir" else Path(root).parent
                source = base / rel
                if not keep(source):
                    continue
                metadata: dict[str, Any] = {"path": rel, "root": root}
                if heading_json is not None:
                    heading = tuple(json.loads(heading_json))
                    text = search_text(heading, text)
                    metadata.update(heading_path=list(heading), start_line=start, end_line=end)
                if text.strip():
                    yield Document(text=text, source=str(source), metadata=metadata)
        finally:
            conn.close()

    def fingerprint(self, *, roots: Sequence[Path] | None = None) -> str:
        """sha256 over the sorted (root, path, content sha256, chunking) of every indexed file
        (under `roots` when given): changes exactly when the indexed content does."""
        keep = _under(roots)
        digest = hashlib.sha256(b"neat-index:1\n")
        for root, row in self._store.all_files():
            if keep(root.base / row.path):
                digest.update(f"{root.path}\0{row.path}\0{row.sha256}\0{row.chunker}\n".encode())
        return digest.hexdigest()

    # -- check -------------------------------------------------------------------------------------

    def check(self, repair: bool = False) -> dict[str, Any]:
        """The index against itself and the files on disk (`neat.indexing.integrity`)."""
        return check_index(
            self._store,
            self.config,
            chunker=self._chunker,
            embedder=self.embedder,
            rebuild=self.build,
            repair=repair,
        )


def _hit(row: ChunkRow, score: float, snippet: str) -> SearchHit:
    return SearchHit(
        path=str(row.absolute_path),
        heading_path=row.heading_path,
        start_line=row.start_line,
        end_line=row.end_line,
        score=float(score),
        snippet=snippet,
    )


def _chunk_count(pending: Sequence[_Parsed]) -> int:
    return sum(len(p.parsed.chunks) for p in pending)


def _under(roots: Sequence[Path] | None) -> Callable[[Path], bool]:
    """A predicate: is a path one of `roots` or below one (always true without roots)?"""
    if roots is None:
        return lambda path: True
    resolved = [Path(r).expanduser().resolve() for r in roots]
    return lambda path: any(path == r or r in path.parents for r in resolved)
