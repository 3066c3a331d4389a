"""A text corpus anyone can build offline: the sources and docs of the installed Python packages.

Every `.py`, `.md`, `.rst` and `.txt` file under the interpreter's site-packages and standard
library, in a fixed (sorted) order, decoded as UTF-8 (others skipped), deduplicated by content,
files over `--max-file-kb` dropped (generated tables, vendored data), until `--mb` megabytes.
Written as JSON lines (one document per line, `{"text", "path"}`) in shards of 64 MB, with
`manifest.json` (sizes, counts, a digest of the whole corpus) and a byte-level BPE
`tokenizer.json` trained on every `--tokenizer-stride`-th document. The corpus differs between
machines (it is what they have installed); the digest says whether two builds are the same.

    python benchmarks/make_code_corpus.py --out data/code --mb 500 [--vocab 16384]

Then train on it with `data.sources: [{type: jsonl, path: data/code}]` and
`data.tokenizer: {type: hf, path: data/code/tokenizer.json}`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

SUFFIXES = (".py", ".md", ".rst", ".txt")
SHARD_BYTES = 64 << 20


def roots() -> list[Path]:
    """Where installed packages live: purelib, platlib and the standard library, each once."""
    found: list[Path] = []
    for key in ("purelib", "platlib", "stdlib"):
        path = Path(sysconfig.get_paths()[key]).resolve()
        if path.is_dir() and not any(path == r or r in path.parents for r in found):
            found.append(path)
    return found


def candidate_files(root: Path, exclude: Path | None) -> Iterator[Path]:
    """Text files under `root` in sorted order, skipping caches and `exclude` (the output)."""
    for path in sorted(root.rglob("*")):
        if path.suffix not in SUFFIXES or "__pycache__" in path.parts:
            continue
        if exclude is not None and exclude in path.parents:
            continue
        if path.is_file():
            yield path


def documents(
    max_bytes: int, max_file_bytes: int, exclude: Path | None
) -> Iterator[tuple[str, str]]:
    """(relative path, text) of distinct UTF-8 files, until `max_bytes` of text."""
    seen: set[bytes] = set()
    total = 0
    for root in roots():
        for path in candidate_files(root, exclude):
            try:
                raw = path.read_bytes()
            except OSError:
                continue
            if not raw.strip() or len(raw) > max_file_bytes:
                continue
            digest = hashlib.blake2b(raw, digest_size=16).digest()
            if digest in seen:
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            seen.add(digest)
            yield f"{root.name}/{path.relative_to(root)}", text
            total += len(raw)
            if total >= max_bytes:
                return


def write_corpus(out: Path, max_bytes: int, max_file_bytes: int) -> dict[str, object]:
    """The shards and their manifest; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.jsonl"):
        old.unlink()
    corpus_digest = hashlib.blake2b(digest_size=16)
    shard_index, shard_bytes, docs, total = 0, 0, 0, 0
    by_suffix: dict[str, int] = {}
    shard = (out / f"shard-{shard_index:04d}.jsonl").open("w", encoding="utf-8")
    for rel, text in documents(max_bytes, max_file_bytes, out.resolve()):
        line = json.dumps({"text": text, "path": rel}, ensure_ascii=False) + "\n"
        if shard_bytes and shard_bytes + len(line) > SHARD_BYTES:
            shard.close()
            shard_index, shard_bytes = shard_index + 1, 0
            shard = (out / f"shard-{shard_index:04d}.jsonl").open("w", encoding="utf-8")
        shard.write(line)
        shard_bytes += len(line)
        corpus_digest.update(line.encode())
        size = len(text.encode())
        total += size
        docs += 1
        suffix = Path(rel).suffix
        by_suffix[suffix] = by_suffix.get(suffix, 0) + size
    shard.close()
    return {
        "documents": docs,
        "text_bytes": total,
        "bytes_by_suffix": dict(sorted(by_suffix.items())),
        "shards": shard_index + 1,
        "digest": corpus_digest.hexdigest(),
        "python": sys.version.split()[0],
        "roots": [str(r) for r in roots()],
    }


def tokenizer_texts(out: Path, stride: int) -> Iterator[str]:
    """Every `stride`-th document, so the sample spans all packages, not the first few."""
    index = 0
    for shard in sorted(out.glob("shard-*.jsonl")):
        with shard.open(encoding="utf-8") as lines:
            for line in lines:
                if index % stride == 0:
                    yield json.loads(line)["text"]
                index += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mb", type=float, default=500.0, help="megabytes of text to gather")
    parser.add_argument("--max-file-kb", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=16384, help="BPE vocabulary size")
    parser.add_argument("--tokenizer-stride", type=int, default=4)
    args = parser.parse_args()

    from neat.data.bpe import train_bpe  # after argparse: --help needs no torch import

    started = time.perf_counter()
    manifest = write_corpus(args.out, int(args.mb * 2**20), args.max_file_kb << 10)
    gathered = time.perf_counter()
    tokenizer = train_bpe(tokenizer_texts(args.out, args.tokenizer_stride), args.vocab)
    tokenizer.save(args.out / "tokenizer.json")
    manifest |= {
        "tokenizer": {
            "type": "byte-level BPE",
            "vocab_size": args.vocab,
            "trained_on": f"every {args.tokenizer_stride}th document",
        },
        "gather_s": round(gathered - started, 1),
        "tokenizer_s": round(time.perf_counter() - gathered, 1),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
