"""A tiny sentence-transformers model built offline, for tests that need a real embedder.

No hub, no downloaded weights: a WordPiece vocabulary is derived from a small in-memory
corpus and a 2-layer, 32-wide BERT is initialised from a fixed seed, so every build gives the
same vectors (verified with sentence-transformers 6.2.0 / transformers 5.23).

Use it from a session-scoped fixture, e.g.::

    from tests.indexing.tiny_models import build_tiny_sentence_transformer

    @pytest.fixture(scope="session")
    def tiny_st(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))

The test folders are packages, so pytest puts the repository root on `sys.path` and the
import works under both `pytest` and `python -m pytest`.
"""

from __future__ import annotations

import importlib
import re
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "TINY_DIM",
    "TINY_MAX_SEQ_LENGTH",
    "build_tiny_cross_encoder",
    "build_tiny_sentence_transformer",
]

TINY_DIM = 32
# Equal to max_position_embeddings: longer texts are truncated instead of overflowing.
TINY_MAX_SEQ_LENGTH = 128
_SEED = 1234
# Written last, so a half-finished build is never taken for a finished one.
_MARKER = ".neat-tiny-model"
_MARKER_VERSION = "1"

_CORPUS = (
    "Markdown documents are split into sections at their headings.",
    "Each chunk keeps the path of headings above it as a breadcrumb.",
    "The index stores chunks, hashes and embeddings in a SQLite database.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Dense retrieval compares unit vectors by their inner product.",
    "Reciprocal rank fusion merges two rankings into one list.",
    "Install the package with pip and run the tests with pytest.",
    "Training a language model needs a tokenizer, a model and an optimizer.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Copy files with cp, move them with mv and list folders with ls.",
    "Git commits record changes; branches let you work on features apart.",
    "A checkpoint saves the model weights and the optimizer state to disk.",
    "Search the documentation for configuration options and examples.",
    "Python functions take arguments and return values to the caller.",
)

_built: dict[Path, Path] = {}


def build_tiny_sentence_transformer(directory: Path) -> Path:
    """Build (or reuse) the tiny model in `directory` and return that directory.

    Deterministic: two builds embed every text identically. A directory that already holds
    a finished build is reused without loading anything; within one process the result is
    also cached by resolved path. Torch's global RNG state is left untouched.
    """
    target = Path(directory).resolve()
    cached = _built.get(target)
    if cached is not None and (cached / _MARKER).is_file():
        return cached
    marker = target / _MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8") == _MARKER_VERSION:
        _built[target] = target
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-bert-") as scratch, _no_progress_bars():
        _build(target, Path(scratch))
    marker.write_text(_MARKER_VERSION, encoding="utf-8")
    _built[target] = target
    return target


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers prints a bar per save and load; keep test output clean, then restore."""
    hf_logging: Any = importlib.import_module("transformers.utils.logging")
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _build(target: Path, scratch: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # BertTokenizerFast: the fast class in transformers 4, an alias of BertTokenizer in 5.
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(_vocabulary(specials), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(name, tok.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    hf_tok = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=TINY_MAX_SEQ_LENGTH,
    )
    config = BertConfig(
        vocab_size=hf_tok.vocab_size,
        hidden_size=TINY_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=TINY_MAX_SEQ_LENGTH,
    )
    bert_dir = scratch / "tiny-bert"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        BertModel(config).save_pretrained(bert_dir)
    hf_tok.save_pretrained(bert_dir)

    transformer = Transformer(
        str(bert_dir),
        max_seq_length=TINY_MAX_SEQ_LENGTH,
        model_kwargs={"local_files_only": True},
        processor_kwargs={"local_files_only": True},
        config_kwargs={"local_files_only": True},
    )
    model = SentenceTransformer(
        modules=[transformer, Pooling(TINY_DIM, pooling_mode="mean"), Normalize()],
        device="cpu",
    )
    model.save(str(target))


def _vocabulary(specials: list[str]) -> dict[str, int]:
    """Specials, every printable ASCII character alone and as a `##` continuation, then the
    corpus words, all in sorted order.

    Built by hand rather than with `WordPieceTrainer`, whose vocabulary order varies between
    runs (it would change the token ids, and so the vectors, from one build to the next).
    Any ASCII word splits into known pieces; other characters become [UNK].
    """
    chars = sorted({c for c in string.printable.lower() if not c.isspace()})
    words = sorted({w.lower() for text in _CORPUS for w in re.findall(r"\w+", text)} - set(chars))
    tokens = [*specials, *chars, *(f"##{c}" for c in chars), *words]
    return {token: i for i, token in enumerate(tokens)}


_CROSS_MARKER = ".neat-tiny-cross-encoder"


def build_tiny_cross_encoder(directory: Path) -> Path:
    """Build (or reuse) a tiny cross-encoder (BERT, one relevance label) in `directory`.

    Same vocabulary and seed approach as `build_tiny_sentence_transformer`, so the scores are
    deterministic; saved with `CrossEncoder.save`, so `CrossEncoder(directory)` loads it.
    """
    target = Path(directory).resolve()
    marker = target / _CROSS_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8") == _MARKER_VERSION:
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-ce-") as scratch, _no_progress_bars():
        _build_cross_encoder(target, Path(scratch))
    marker.write_text(_MARKER_VERSION, encoding="utf-8")
    return target


def _build_cross_encoder(target: Path, scratch: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import (  # type: ignore[attr-defined]
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(_vocabulary(specials), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(name, tok.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    hf_tok = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=TINY_MAX_SEQ_LENGTH,
    )
    config = BertConfig(
        vocab_size=hf_tok.vocab_size,
        hidden_size=TINY_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=TINY_MAX_SEQ_LENGTH,
        num_labels=1,
    )
    bert_dir = scratch / "tiny-bert-ce"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model_ = BertForSequenceClassification(config)
        with torch.no_grad():  # spread the near-equal scores of random weights apart
            model_.classifier.weight.mul_(100.0)
        model_.save_pretrained(bert_dir)
    hf_tok.save_pretrained(bert_dir)
    model = CrossEncoder(
        str(bert_dir), device="cpu", local_files_only=True, max_length=TINY_MAX_SEQ_LENGTH
    )
    model.save(str(target))
