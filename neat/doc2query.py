"""doc2query pairs: queries for every chunk, written by a small LM that neat trains on the
corpus itself (Nogueira et al. 2019, "Document Expansion by Query Prediction").

Why: the heading pairs are the only ones written the way users ask ("Defining Post and
Creating a New Instance"), and they are few: one per titled section. Sentence and code pairs
cover every chunk but read like passages. A causal LM trained on "passage -> heading" learns
what a heading for a passage looks like and writes one for every chunk, so the retriever
sees query-style pairs for all of them.

The LM is an ordinary neat run (`model.type: gpt`, a `prompt_response` jsonl source: loss on
the query tokens only) under `work/`, named by a fingerprint of its training file and
recipe, so calling again with the same seed pairs reuses the finished run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
import yaml
from torch import nn

from neat.indexing.pairs import PassageChunk, TrainingPair, index_view
from neat.indexing.records import search_text
from neat.interfaces import ITokenizer

__all__ = [
    "Doc2QueryRecipe",
    "doc2query_pairs",
    "filter_queries",
    "generated_pairs",
    "query_prompt",
]

log = structlog.get_logger(__name__)

# Fewer heading pairs than this teach the LM nothing it can generalise from.
MIN_SEED_PAIRS = 32
# What follows the passage names the task; the passage's last pre-token never merges across it.
TASKS = {"heading": "\n\nQuery:", "sentence": "\n\nSentence:", "code": "\n\nExplanation:"}
MAX_QUERY_TOKENS = 16
MIN_QUERY_WORDS = 2
MAX_COPY_WORDS = 8  # a longer verbatim piece of the chunk is a copy, not a query
GENERATE_BATCH = 64
TOP_K = 10  # the extra queries per chunk are sampled from the 10 likeliest tokens
DONE_MARKER = "doc2query.done"
MIN_GROUNDED = 0.5
_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s")
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Doc2QueryRecipe:
    """The query LM's shape and training; the defaults suit a book of a few hundred sections
    (about 3M parameters)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    block_size: int = 320
    vocab_size: int = 4096
    batch_size: int = 32
    lr: float = 1.0e-3
    # Pair kinds trained on, each after its own task separator (generation asks for "heading"):
    # "sentence" (rest of chunk -> the sentence) and "code" (code block -> the prose before
    # it) give the LM many more passages to read, so it learns to write from the passage.
    kinds: tuple[str, ...] = ("heading",)


def doc2query_pairs(
    chunks: Sequence[PassageChunk],
    seed_pairs: Sequence[TrainingPair],
    work: Path,
    *,
    seed: int = 0,
    steps: int = 300,
    per_chunk: int = 1,
    device: str = "auto",
    recipe: Doc2QueryRecipe | None = None,
    console: Any = None,
) -> list[TrainingPair]:
    """`per_chunk` generated queries for each chunk, filtered (`filter_queries`), as pairs of
    kind "doc2query" whose passage is the chunk's search text. [] (and a log line) when the
    seed pairs are too few to learn from. The first query of a chunk is greedy, the others
    top-k samples; the same inputs and seed give the same pairs."""
    recipe = recipe or Doc2QueryRecipe()
    examples = [p for p in seed_pairs if p.kind in recipe.kinds and p.kind in TASKS]
    if sum(p.kind == "heading" for p in examples) < MIN_SEED_PAIRS:
        log.warning(
            "doc2query.too_few_seed_pairs",
            heading_pairs=sum(p.kind == "heading" for p in examples),
            needed=MIN_SEED_PAIRS,
        )
        return []
    seen = {" ".join(p.query.split()).casefold() for p in examples}
    run_dir = train_query_model(chunks, examples, work, recipe, seed, steps, device, console)
    queries = generate_queries(chunks, run_dir, seed=seed, per_chunk=per_chunk, device=device)
    pairs = []
    for chunk, generated in zip(chunks, queries, strict=True):
        passage = search_text(chunk.heading_path, chunk.text)
        for query in filter_queries(generated, chunk.text, seen):
            pairs.append(TrainingPair(query, passage, chunk.id, "doc2query"))
    log.info("doc2query.pairs", chunks=len(chunks), pairs=len(pairs))
    return pairs


def filter_queries(
    queries: Iterable[str], chunk_text: str, memorised: Collection[str] = ()
) -> list[str]:
    """Queries worth training on, each once: stripped; of two words or more (punctuation and
    markup are no words); not a verbatim copy of more than `MAX_COPY_WORDS` words of the chunk
    (any case, any spacing); not one of the `memorised` training queries, casefolded (a small
    LM repeats those for passages they do not fit); and grounded: at least `MIN_GROUNDED` of
    its words occur in the chunk (Gospodinov et al. 2023, "Doc2Query--: When Less is More",
    found hallucinated queries hurt retrieval)."""
    flat = " ".join(chunk_text.split()).casefold()
    vocabulary = set(_WORD.findall(flat))
    kept: dict[str, None] = {}
    for query in queries:
        query = " ".join(query.replace("\ufffd", " ").split())  # a character cut at the end
        folded = query.casefold()
        terms = _WORD.findall(folded)  # words of letters or digits: "The `" is one
        if len(terms) < MIN_QUERY_WORDS or folded in memorised:
            continue
        if len(query.split()) > MAX_COPY_WORDS and folded in flat:
            continue
        if sum(t in vocabulary for t in terms) < MIN_GROUNDED * len(terms):
            continue
        kept.setdefault(query, None)
    return list(kept)


def query_prompt(tokenizer: ITokenizer, passage: str, budget: int, task: str = "heading") -> str:
    """The passage cut to `budget` tokens, then the task's separator: the same text in
    training and generation, so both see the same tokens."""
    passage = passage.strip()
    ids = tokenizer.encode(passage)
    if len(ids) > budget:
        passage = tokenizer.decode(ids[:budget]).rstrip()
    return passage + TASKS[task]


def chunk_passage(chunk: PassageChunk) -> str:
    """A chunk as the LM reads it: like a heading pair's passage, the parent headings and
    the text without heading lines (the chunk's own heading is what a query would say)."""
    body = "\n".join(line for line in chunk.text.split("\n") if not _HEADING_LINE.match(line))
    return search_text(chunk.heading_path[:-1], body.strip())


# -- training ----------------------------------------------------------------------------------


def train_query_model(
    chunks: Sequence[PassageChunk],
    examples: Sequence[TrainingPair],
    work: Path,
    recipe: Doc2QueryRecipe,
    seed: int,
    steps: int,
    device: str,
    console: Any = None,
) -> Path:
    """The run directory of a finished query LM for `examples`: reused when one with the same
    fingerprint is there, else trained now (resuming a run that was cut short)."""
    from neat.config import load_config
    from neat.data.bpe import train_bpe
    from neat.di import build_container
    from neat.training.resume import resolve_run

    work.mkdir(parents=True, exist_ok=True)
    tokenizer_path = work / "tokenizer.json"
    texts = [*(chunk_passage(c) for c in chunks), *(p.query for p in examples)]
    tokenizer = train_bpe(texts, recipe.vocab_size)
    tokenizer.save(tokenizer_path)
    records = list(_records(tokenizer, examples, recipe.block_size))
    train = work / "train.jsonl"
    _write_atomic(train, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    config = _config(recipe, seed, steps, device, console is not None)
    fingerprint = hashlib.sha256(
        train.read_bytes() + tokenizer_path.read_bytes() + json.dumps(config).encode()
    ).hexdigest()[:16]
    run_dir = work / f"run-{fingerprint}"
    if (run_dir / DONE_MARKER).exists():
        log.info("doc2query.reused", run_dir=str(run_dir))
        return run_dir
    config_path = work / f"doc2query-{fingerprint}.yaml"
    _write_atomic(config_path, yaml.safe_dump(config, sort_keys=False))
    loaded = load_config(config_path)
    run_dir, resume_from = resolve_run(loaded, run_dir, "auto")
    container = build_container(loaded, run_dir=run_dir, resume_from=resume_from, console=console)
    trainer = container.trainer()
    trainer.restore()
    state = trainer.fit()
    (run_dir / DONE_MARKER).write_text(json.dumps({"step": state.step}), encoding="utf-8")
    log.info("doc2query.trained", run_dir=str(run_dir), steps=state.step, pairs=len(records))
    return run_dir


def _records(
    tokenizer: ITokenizer, examples: Sequence[TrainingPair], block_size: int
) -> Iterator[dict[str, str]]:
    """prompt_response records, each fitting `block_size` with its end-of-text tokens: the
    query is kept whole (at most `MAX_QUERY_TOKENS`), the passage cut."""
    for pair in examples:
        query = " ".join(pair.query.split())
        ids = tokenizer.encode(" " + query)[:MAX_QUERY_TOKENS]
        response = tokenizer.decode(ids)
        budget = block_size - len(ids) - 1 - 8  # eot, separator (<8 tokens)
        yield {
            "prompt": query_prompt(tokenizer, pair.passage, budget, pair.kind),
            "response": response,
        }


def _config(
    recipe: Doc2QueryRecipe, seed: int, steps: int, device: str, console: bool
) -> dict[str, Any]:
    monitors = ["console", "structlog", "metrics"] if console else ["structlog", "metrics"]
    return {
        "name": "doc2query",
        "model": {"type": "gpt", "n_layer": recipe.n_layer, "n_head": recipe.n_head,
                  "n_embd": recipe.n_embd, "block_size": recipe.block_size, "dropout": 0.0},
        "data": {"type": "jsonl", "path": "train.jsonl", "format": "prompt_response",
                 "tokenizer": {"type": "bpe", "vocab_size": recipe.vocab_size,
                               "path": "tokenizer.json"},
                 "val_fraction": 0.05, "cache_dir": "cache"},
        "optimization": {"type": "adamw", "lr": recipe.lr, "min_lr": recipe.lr / 10,
                         "warmup_steps": min(50, steps // 10), "weight_decay": 0.1},
        "training": {"max_steps": steps, "batch_size": recipe.batch_size, "seed": seed,
                     "device": device, "precision": "auto", "compile": False},
        "evaluation": {"interval": steps, "batches": 4},
        "monitoring": {"log_interval": max(1, steps // 10), "monitors": monitors,
                       "progress": "plain"},
        "checkpoint": {"interval": max(1, steps // 2), "keep_last": 1},
    }  # fmt: skip


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# -- generation --------------------------------------------------------------------------------


def generate_queries(
    chunks: Sequence[PassageChunk],
    run_dir: Path,
    *,
    seed: int = 0,
    per_chunk: int = 1,
    device: str = "auto",
    batch_size: int = GENERATE_BATCH,
) -> list[list[str]]:
    """`per_chunk` raw queries for each chunk, in order. Prompts are grouped by token length,
    so a batch needs no padding and gives what one prompt at a time would."""
    from neat.models.load import load_trained_model
    from neat.persistence.manifest import resolve_checkpoint
    from neat.training.device import resolve_device

    model, tokenizer, config = load_trained_model(
        resolve_checkpoint(run_dir), resolve_device(device)
    )
    block_size = config.model.block_size
    budget = block_size - MAX_QUERY_TOKENS - 1 - 8
    start = [tokenizer.eot_id] if tokenizer.eot_id is not None else []
    texts = [query_prompt(tokenizer, chunk_passage(c), budget) for c in chunks]
    prompts = [start + tokenizer.encode(text) for text in texts]
    stops = _stop_ids(tokenizer)
    out: list[list[str]] = [[] for _ in chunks]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        by_length.setdefault(len(ids), []).append(i)
    device_of = next(model.parameters()).device
    for length in sorted(by_length):
        rows = by_length[length]
        for at in range(0, len(rows), batch_size):
            batch = rows[at : at + batch_size]
            batch_ids = torch.tensor([prompts[i] for i in batch], device=device_of)
            for sample in range(per_chunk):
                generator = torch.Generator(device=device_of)
                generator.manual_seed(
                    (seed * 1_000_003 + length * 10_007 + at * 101 + sample) % 2**62
                )
                new = _decode_batch(model, batch_ids, block_size, sample, generator, stops)
                for i, tokens in zip(batch, new, strict=True):
                    out[i].append(tokenizer.decode(tokens))
    return out


def _decode_batch(
    model: nn.Module,
    ids: torch.Tensor,
    block_size: int,
    sample: int,
    generator: torch.Generator,
    stops: frozenset[int],
) -> list[list[int]]:
    """Each row's new tokens up to (not including) the first stop token; greedy for sample 0,
    top-k sampling after. Decoding ends once every row has stopped."""
    from neat.evaluation.generation import iter_tokens

    rows: list[list[int]] = [[] for _ in range(ids.shape[0])]
    done = [False] * ids.shape[0]
    steps = iter_tokens(
        model,
        ids,
        MAX_QUERY_TOKENS,
        block_size=block_size,
        temperature=0.0 if sample == 0 else 1.0,
        top_k=TOP_K,
        generator=generator,
    )
    for step in steps:
        for row, token in enumerate(step[:, 0].tolist()):
            if done[row]:
                continue
            if token in stops:
                done[row] = True
            else:
                rows[row].append(token)
        if all(done):
            break
    return rows


def _stop_ids(tokenizer: ITokenizer) -> frozenset[int]:
    """End-of-text and every token that holds a line break."""
    stops = {i for i in range(tokenizer.vocab_size) if "\n" in tokenizer.decode([i])}
    if tokenizer.eot_id is not None:
        stops.add(tokenizer.eot_id)
    return frozenset(stops)


def generated_pairs(
    db: Path,
    train: Sequence[TrainingPair],
    val: Sequence[TrainingPair],
    *,
    work: Path,
    seed: int = 0,
    negatives: int = 1,
    device: str = "auto",
    console: Any = None,
) -> list[TrainingPair]:
    """doc2query pairs for the training chunks, the query LM
    trained on the training pairs' headings: the held-out chunks stay unseen."""
    held = {p.chunk_id for p in val}
    with index_view(db) as view:
        chunks = [c for c in view.chunks if c.id not in held]
        made = doc2query_pairs(chunks, train, work, seed=seed, device=device, console=console)
        return view.with_negatives(made, negatives)
