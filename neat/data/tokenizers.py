"""Tokenizers (char, byte, BPE, any HF tokenizer.json): configs, builders and their files."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import structlog
from pydantic import Field, ValidationError, field_validator, model_validator

from neat.config import ComponentConfig, PathStr, build, register_component
from neat.data.bpe import HFTokenizer, train_bpe
from neat.data.image_text import ImageTextTokenizer  # registers tokenizer type image_text
from neat.errors import CheckpointError, ConfigError, DataError
from neat.files import write_text_atomic
from neat.interfaces import IDataSource, IFormattedSource, IMixtureSource, ITokenizer
from neat.interfaces.contexts import TokenizerContext

log = structlog.get_logger(__name__)


class CharTokenizerConfig(ComponentConfig):
    """One token per character seen in the corpus (vocab saved with the run)."""

    type: Literal["char"] = "char"


class ByteTokenizerConfig(ComponentConfig):
    """One token per UTF-8 byte plus an end-of-text token."""

    type: Literal["byte"] = "byte"


# Byte-level BPE starts from one token per byte; merges and special tokens come on top.
BYTE_ALPHABET_SIZE = 256


class BPETokenizerConfig(ComponentConfig):
    """Byte-level BPE trained on the corpus (on first use, then cached), or loaded from `path`."""

    type: Literal["bpe"] = "bpe"
    vocab_size: int = Field(
        default=4096,
        ge=BYTE_ALPHABET_SIZE + 1,
        description="256 byte tokens + merges + special tokens",
    )
    special_tokens: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>"],
        description="added before the merges; <|endoftext|> separates documents",
    )
    min_frequency: int = Field(default=2, ge=1, description="a pair merges only this often")
    path: PathStr | None = Field(
        default=None, description="a trained tokenizer.json to use instead of training"
    )

    @field_validator("special_tokens")
    @classmethod
    def _specials_are_distinct(cls, value: list[str]) -> list[str]:
        if any(not token for token in value):
            raise ValueError("special tokens must be non-empty strings")
        duplicates = sorted({t for t in value if value.count(t) > 1})
        if duplicates:
            raise ValueError(f"special tokens are listed twice: {duplicates}")
        return value

    @model_validator(mode="after")
    def _vocab_holds_bytes_and_specials(self) -> BPETokenizerConfig:
        needed = BYTE_ALPHABET_SIZE + len(self.special_tokens)
        if self.vocab_size < needed:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must be at least {needed}: "
                f"{BYTE_ALPHABET_SIZE} byte tokens + {len(self.special_tokens)} special tokens"
            )
        return self


class HFTokenizerConfig(ComponentConfig):
    """Any Hugging Face `tokenizer.json` (GPT-2's, Llama's, ...) loaded by path."""

    type: Literal["hf"] = "hf"
    path: PathStr = Field(description="the tokenizer.json file")
    eot_token: str | None = Field(
        default=None,
        description="end-of-text token; default: the first of <|endoftext|>, </s>, "
        "<|end_of_text|>, <eos> in the vocabulary",
    )


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, ensure_ascii=False, sort_keys=True)


def _write_json(path: Path, spec: dict[str, Any]) -> None:
    """Atomically (neat.files), so a reader never sees half a tokenizer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, _canonical(spec) + "\n")


def _as_list(ids: Sequence[int]) -> list[int]:
    """Plain ints (a tensor or array gives its values, never its raw buffer to `bytes`)."""
    if isinstance(ids, list):
        return ids
    tolist = getattr(ids, "tolist", None)
    return list(tolist()) if callable(tolist) else list(ids)


class CharTokenizer:
    """One id per character seen in the corpus; ids follow the sorted characters.

    `eot` adds an end-of-text id after the characters (no character encodes to it), for data
    whose documents must stay apart in one token stream (prompt/response records). Without it
    the vocabulary, the ids and the fingerprint are those of a char tokenizer without `eot`.
    """

    def __init__(self, chars: Sequence[str], *, eot: bool = False) -> None:
        bad = [c for c in chars if len(c) != 1]
        if bad:
            raise ValueError(f"CharTokenizer takes single characters, got {bad[:5]!r}")
        self.chars: list[str] = sorted(set(chars))
        self.eot = eot
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, texts: Iterable[str], *, eot: bool = False) -> CharTokenizer:
        vocab: set[str] = set()
        for text in texts:
            vocab.update(text)
        return cls(sorted(vocab), eot=eot)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + self.eot

    @property
    def eot_id(self) -> int | None:
        return len(self.chars) if self.eot else None

    def encode(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unseen = sorted(set(text) - stoi.keys())
            shown = ", ".join(repr(c) for c in unseen[:10])
            more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
            raise DataError(
                f"character(s) {shown}{more} are not in the char tokenizer's vocabulary "
                f"({self.vocab_size} characters seen in the training data); "
                "use only those characters, or train with data.tokenizer.type: byte"
            ) from None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        chars, n = self.chars, len(self.chars)
        values = _as_list(ids)
        try:
            if not values or min(values) >= 0:  # a negative id would index from the end
                return "".join([chars[i] for i in values])
        except IndexError:
            pass
        size = self.vocab_size
        bad = [i for i in values if not 0 <= i < size]
        if not bad:  # end-of-text ids (past the characters) decode to nothing
            return "".join([chars[i] for i in values if i < n])
        raise ValueError(f"token id(s) {bad[:5]} are outside the vocabulary (size {size})")

    def token_bytes(self) -> list[int]:
        return [len(c.encode("utf-8")) for c in self.chars] + [0] * self.eot

    def _spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"neat_tokenizer": "char", "chars": self.chars}
        if self.eot:  # only then: a char tokenizer without it keeps its fingerprint
            spec["eot"] = True
        return spec

    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self._spec()).encode()).hexdigest()

    def save(self, path: Path) -> None:
        _write_json(path, self._spec())


class ByteTokenizer:
    """UTF-8 bytes (ids 0..255) plus end-of-text (256): any text encodes, no fitting needed."""

    EOT = 256

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def eot_id(self) -> int | None:
        return self.EOT

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        values = _as_list(ids)
        try:
            data = bytes(values)  # every id a byte value: the common case, at C speed
        except (ValueError, TypeError):
            bad = [i for i in values if not 0 <= i <= self.EOT]
            if bad:
                raise ValueError(
                    f"token id(s) {bad[:5]} are outside the vocabulary (size 257)"
                ) from None
            data = bytes([i for i in values if i < self.EOT])
        # A model can emit a cut-off multi-byte sequence; show it as U+FFFD rather than fail.
        return data.decode("utf-8", errors="replace")

    def token_bytes(self) -> list[int]:
        return [1] * 256 + [0]

    def _spec(self) -> dict[str, Any]:
        return {"neat_tokenizer": "byte"}

    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self._spec()).encode()).hexdigest()

    def save(self, path: Path) -> None:
        _write_json(path, self._spec())


def load_tokenizer(path: Path) -> ITokenizer:
    """Read a tokenizer file: neat's own (char, byte) or any HF `tokenizer.json` (BPE, GPT-2,
    Llama...). CheckpointError when missing or not a tokenizer."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        spec = json.loads(text)
    except FileNotFoundError:
        raise CheckpointError(
            f"tokenizer file {path} does not exist; is this a neat run or checkpoint folder?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"tokenizer file {path} is unreadable or not JSON: {exc}") from exc
    if isinstance(spec, dict) and "neat_tokenizer" not in spec and "model" in spec:
        try:
            return HFTokenizer.from_str(text)
        except ValueError as exc:
            raise CheckpointError(f"tokenizer file {path}: {exc}") from exc
    kind = spec.get("neat_tokenizer") if isinstance(spec, dict) else None
    if kind == "byte":
        return ByteTokenizer()
    codes = spec.get("codes") if isinstance(spec, dict) else None
    if kind == "image_text" and isinstance(codes, int) and not isinstance(codes, bool):
        try:
            return ImageTextTokenizer(codes)
        except ValueError as exc:
            raise CheckpointError(f"tokenizer file {path}: {exc}") from exc
    chars = spec.get("chars") if isinstance(spec, dict) else None
    eot = spec.get("eot", False) if isinstance(spec, dict) else None
    if (
        kind == "char"
        and isinstance(chars, list)
        and all(isinstance(c, str) and len(c) == 1 for c in chars)
        and isinstance(eot, bool)
    ):
        return CharTokenizer(chars, eot=eot)
    raise CheckpointError(f"tokenizer file {path} is not a valid neat tokenizer (kind {kind!r})")


def encode_to_array(tokenizer: ITokenizer, text: str) -> np.ndarray:
    """Token ids as int64, the dtype embedding lookups take."""
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


def _char_needs_eot(source: IDataSource) -> bool:
    """Prompt/response records are short documents that must stay apart in the token stream
    (the model learns where a response ends); plain text keeps the vocabulary it always had."""
    parts = [p for p, _ in source.parts] if isinstance(source, IMixtureSource) else [source]
    return any(isinstance(p, IFormattedSource) and p.format == "prompt_response" for p in parts)


def _char_cache_path(source: IDataSource, cache_dir: Path) -> Path:
    eot = "-eot" if _char_needs_eot(source) else ""  # never a vocabulary cached without one
    return Path(cache_dir) / f"vocab-char-{source.fingerprint()[:16]}{eot}.json"


def _fit_char(source: IDataSource, path: Path) -> CharTokenizer:
    tokenizer = CharTokenizer.fit(
        (doc.text for doc in source.documents()), eot=_char_needs_eot(source)
    )
    if not tokenizer.chars:
        raise DataError(f"{source.describe()} contains no text; check data.path")
    tokenizer.save(path)
    return tokenizer


def build_char(cfg: CharTokenizerConfig, ctx: TokenizerContext) -> CharTokenizer:
    # The vocab depends only on the corpus, so cache it by the corpus fingerprint: a second
    # run skips a full pass over the text.
    source = ctx.source
    path = _char_cache_path(source, ctx.cache_dir)
    cached = _load_cached(path, CharTokenizer)
    if cached is not None:
        return cached
    return _fit_char(source, path)


_T = TypeVar("_T")
_C = TypeVar("_C", bound=ComponentConfig)


def _load_cached(path: Path, kind: type[_T]) -> _T | None:
    """A cached tokenizer of `kind`, or None; a damaged cache file is rebuilt, never trusted."""
    if not path.is_file():
        return None
    try:
        cached = load_tokenizer(path)
    except CheckpointError:
        return None
    return cached if isinstance(cached, kind) else None


def _typed(cfg: ComponentConfig, cls: type[_C]) -> _C:
    """`cfg` as `cls` (a plain ComponentConfig naming the type is validated into one)."""
    if isinstance(cfg, cls):
        return cfg
    try:
        return cls.model_validate(cfg.model_dump())
    except ValidationError as exc:
        raise ConfigError(f"data.tokenizer (type {cfg.type!r}) is invalid: {exc}") from None


def _load_hf_file(path: Path, eot_token: str | None, hint: str) -> HFTokenizer:
    """Load a tokenizer.json named by `data.tokenizer.path`; DataError naming the key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"tokenizer file {path} does not exist; check data.tokenizer.path{hint}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"tokenizer file {path} is unreadable ({exc}); check data.tokenizer.path"
        ) from exc
    try:
        tokenizer = HFTokenizer.from_str(text)
    except ValueError as exc:
        raise DataError(
            f"tokenizer file {path} (data.tokenizer.path) is not a Hugging Face "
            f"tokenizer.json: {exc}"
        ) from exc
    if eot_token is None:
        return tokenizer
    try:
        return HFTokenizer(tokenizer.hf_tokenizer, eot_token)
    except ValueError:
        raise DataError(
            f"data.tokenizer.eot_token {eot_token!r} is not in the vocabulary of {path}"
        ) from None


def bpe_cache_path(cfg: BPETokenizerConfig, source: IDataSource, cache_dir: Path) -> Path:
    """Where the BPE trained for this corpus and these settings is cached."""
    key = json.dumps(
        [source.fingerprint(), cfg.vocab_size, list(cfg.special_tokens), cfg.min_frequency]
    )
    return Path(cache_dir) / f"bpe-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _train_bpe(cfg: BPETokenizerConfig, source: IDataSource, path: Path) -> HFTokenizer:
    """Train on `source` (streamed), save to `path`, log time and vocab size."""
    counts = {"documents": 0, "chars": 0}

    def texts() -> Iterator[str]:
        for doc in source.documents():
            counts["documents"] += 1
            counts["chars"] += len(doc.text)
            yield doc.text

    log.info("tokenizer_training", type="bpe", vocab_size=cfg.vocab_size, source=source.describe())
    start = time.perf_counter()
    tokenizer = train_bpe(texts(), cfg.vocab_size, cfg.special_tokens, cfg.min_frequency)
    seconds = time.perf_counter() - start
    if counts["chars"] == 0:
        raise DataError(f"{source.describe()} contains no text; check data.path")
    tokenizer.save(path)
    log.info(
        "tokenizer_trained",
        type="bpe",
        vocab_size=tokenizer.vocab_size,
        requested_vocab_size=cfg.vocab_size,
        seconds=round(seconds, 3),
        documents=counts["documents"],
        chars=counts["chars"],
        path=str(path),
    )
    if tokenizer.vocab_size < cfg.vocab_size:
        log.warning(
            "tokenizer_vocab_smaller_than_requested",
            vocab_size=tokenizer.vocab_size,
            requested_vocab_size=cfg.vocab_size,
            hint="the corpus has too few repeated pairs; lower vocab_size or min_frequency",
        )
    return tokenizer


_TRAIN_HINT = " (create it with `neat data tokenizer train -c CONFIG`, or remove the key to train)"


def build_bpe(cfg: BPETokenizerConfig, ctx: TokenizerContext) -> HFTokenizer:
    """A trained BPE: `path` if set, else the cached one for this corpus, else train now."""
    if cfg.path is not None:
        return _load_hf_file(Path(cfg.path), None, _TRAIN_HINT)
    path = bpe_cache_path(cfg, ctx.source, ctx.cache_dir)
    cached = _load_cached(path, HFTokenizer)
    if cached is not None:
        return cached
    return _train_bpe(cfg, ctx.source, path)


def build_hf(cfg: HFTokenizerConfig, ctx: TokenizerContext) -> HFTokenizer:
    return _load_hf_file(Path(cfg.path), cfg.eot_token, "")


def build_byte(cfg: ByteTokenizerConfig, ctx: TokenizerContext) -> ByteTokenizer:
    return ByteTokenizer()


def train_tokenizer(
    cfg: ComponentConfig,
    source: IDataSource,
    cache_dir: Path,
    output: Path | None = None,
    force: bool = False,
) -> tuple[ITokenizer, Path]:
    """Train (fit) the tokenizer `cfg` names; returns it and the file it lives in.

    bpe: reuses the trained file (`data.tokenizer.path` if set and present, else the cache)
    unless `force`; otherwise trains and writes `data.tokenizer.path` (or the cache). char: the
    same with the char vocab cache. The file is also written to `output` when given, and then
    `output` is returned. byte and hf have nothing to train (ConfigError).
    """
    tokenizer: ITokenizer
    if cfg.type == "bpe":
        bpe = _typed(cfg, BPETokenizerConfig)
        home = Path(bpe.path) if bpe.path is not None else bpe_cache_path(bpe, source, cache_dir)
        found: HFTokenizer | None = None
        if not force:
            if bpe.path is not None and home.exists():
                found = _load_hf_file(home, None, "")  # the user's file: never silently replaced
            elif bpe.path is None:
                found = _load_cached(home, HFTokenizer)
        if found is not None:
            tokenizer = found
            log.info("tokenizer_reused", type="bpe", path=str(home), vocab_size=found.vocab_size)
        else:
            # Without `path` the cache is refreshed too (the next `neat train` reuses it); a
            # user-named `path` is written only when no other output is given.
            destination = home
            if bpe.path is not None and output is not None:
                destination = Path(output)
            tokenizer = _train_bpe(bpe, source, destination)
    elif cfg.type == "char":
        home = _char_cache_path(source, cache_dir)
        cached = None if force else _load_cached(home, CharTokenizer)
        tokenizer = cached if cached is not None else _fit_char(source, home)
        log.info("tokenizer_ready", type="char", vocab_size=tokenizer.vocab_size, path=str(home))
    else:
        raise ConfigError(
            f"data.tokenizer.type {cfg.type!r} has nothing to train; "
            "only bpe and char tokenizers are trained on the corpus"
        )
    if output is not None:
        output = Path(output)
        tokenizer.save(output)
        return tokenizer, output
    return tokenizer, home


def build_tokenizer(cfg: ComponentConfig, source: IDataSource, cache_dir: Path) -> ITokenizer:
    """The tokenizer `cfg` names, fitted on `source` when its type needs fitting."""
    tokenizer: ITokenizer = build("tokenizer", cfg, TokenizerContext(source, Path(cache_dir)))
    return tokenizer


register_component("tokenizer", CharTokenizerConfig, build_char)
register_component("tokenizer", ByteTokenizerConfig, build_byte)
register_component("tokenizer", BPETokenizerConfig, build_bpe)
register_component("tokenizer", HFTokenizerConfig, build_hf)
