"""Peak memory of preparing a generated 1 GB corpus: it must stay under 1 GB (the corpus is
streamed, never held whole).

The corpus is one 1 GiB text file (the hardest case: a file far larger than a piece), written
under the test's temporary folder. The prepare runs in a child of a small watcher process, which
reports `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest resident set of the prepare process
and any process it waited for, and nothing of pytest's.

Opt-in (it writes 1 GB of text and 2 GB of tokens):

    python -m pytest benchmarks/test_data_prepare_memory.py --benchmark-only -s -m slow
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SHAKESPEARE = Path(__file__).resolve().parents[1] / "examples" / "data" / "tinyshakespeare.txt"
CORPUS_BYTES = 1 << 30
LIMIT_BYTES = 1 << 30

PREPARE = """
import json, sys, time
from pathlib import Path
from neat.data import ByteTokenizer, TextFileSource, prepare_source
start = time.perf_counter()
prepared = prepare_source(TextFileSource([sys.argv[1]]), ByteTokenizer(), Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": prepared.num_tokens,
                  "pieces": prepared.manifest["pieces"], "shards": len(prepared.shards)}))
"""

WATCH = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"rc": done.returncode, "peak_kib": peak_kib, "out": done.stdout,
                  "err": done.stderr[-2000:]}))
"""


def _opted_in(config: pytest.Config) -> bool:
    return "slow" in (config.getoption("markexpr", "") or "")


def _write_corpus(path: Path, size: int) -> None:
    """`size` bytes of Shakespeare, rotated so that no two 1 MiB blocks are the same."""
    text = SHAKESPEARE.read_bytes()
    written = 0
    with path.open("wb") as f:
        i = 0
        while written < size:
            shift = (i * 7919) % len(text)
            block = (text[shift:] + text[:shift])[: min(len(text), size - written)]
            f.write(block)
            written += len(block)
            i += 1


@pytest.mark.slow
@pytest.mark.benchmark(group="data-prepare-memory")
def test_peak_rss_of_preparing_1gb_stays_under_1gb(
    benchmark: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not _opted_in(request.config):
        pytest.skip("opt-in: writes 3 GB; run with -m slow")
    corpus = tmp_path / "corpus.txt"
    _write_corpus(corpus, CORPUS_BYTES)
    result: dict[str, Any] = {}

    def run() -> None:
        command = [sys.executable, "-c", PREPARE, str(corpus), str(tmp_path / "cache")]
        started = time.perf_counter()
        watched = subprocess.run(
            [sys.executable, "-c", WATCH, *command], capture_output=True, text=True, check=True
        )
        result.update(json.loads(watched.stdout))
        result["wall_s"] = time.perf_counter() - started

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert result["rc"] == 0, result["err"]
    stats = json.loads(result["out"].strip().splitlines()[-1])
    peak = result["peak_kib"] * 1024
    benchmark.extra_info.update(
        {
            "corpus_bytes": CORPUS_BYTES,
            "peak_rss_bytes": peak,
            "prepare_seconds": stats["seconds"],
            "tokens": stats["tokens"],
            "pieces": stats["pieces"],
            "shards": stats["shards"],
        }
    )
    print(
        f"\nprepare of a {CORPUS_BYTES / 2**30:.0f} GiB text file: peak RSS "
        f"{peak / 2**20:,.0f} MiB, {stats['seconds']:.1f} s "
        f"({CORPUS_BYTES / 1e6 / stats['seconds']:,.0f} MB/s), {stats['tokens']:,} tokens in "
        f"{stats['shards']} shards, read as {stats['pieces']} pieces"
    )
    assert stats["tokens"] == CORPUS_BYTES + 1  # one byte per token, one end-of-text
    assert peak < LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"
