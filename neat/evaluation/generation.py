"""Autoregressive sampling with temperature, top-k and top-p (nucleus, Holtzman et al. 2019),
and incremental decoding so text can be shown as it is produced.

Models with a `make_cache()` (GPT's attention variants) decode with a KV cache while the
whole sequence fits in the context: each step then runs one token instead of the window.
Past `block_size` the window slides, so it is recomputed as before. On a GPU the one-token
step is replayed from a CUDA graph (`neat.evaluation.cuda_graph`).

`stream=True` is for models with a memory (titans): the history is read segment by segment,
each full segment once, its memory carried in `state`, so the context is unbounded and a
step costs one segment at most."""

from __future__ import annotations

import inspect
import math
from collections.abc import Generator, Sequence

import torch
from torch import nn

from neat.errors import ConfigError, NeatError
from neat.evaluation.cuda_graph import GraphedDecodeStep
from neat.interfaces import ITokenizer

__all__ = [
    "MAX_NEW_TOKENS",
    "MAX_SEED",
    "TextStream",
    "check_sampling",
    "check_stream",
    "filter_logits",
    "generate",
    "iter_tokens",
]

# A guard against typos such as 10**12, which would otherwise run for days without a word.
MAX_NEW_TOKENS = 1_000_000
# torch.Generator.manual_seed takes a signed 64-bit value; the same rule as training.seed.
MAX_SEED = 2**63 - 1


def check_sampling(
    *,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> None:
    """Refuse settings that would crash sampling or silently mean something else."""
    if max_new_tokens is not None and not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ConfigError(
            f"max_new_tokens must be between 0 and {MAX_NEW_TOKENS:,}, got {max_new_tokens}"
        )
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0.0):
        raise ConfigError(
            f"temperature must be a finite number >= 0 (0 means greedy), got {temperature}"
        )
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be at least 1 (or unset to keep every token), got {top_k}")
    if top_p is not None and not 0.0 <= top_p <= 1.0:  # also refuses NaN
        raise ConfigError(
            f"top_p must be between 0 and 1 (0 keeps only the likeliest token), got {top_p}"
        )
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be between 0 and 2**63 - 1, got {seed}")


def check_stream(model: nn.Module) -> int:
    """The segment a model with memory is read by; refuse a model that has no memory."""
    segment = getattr(model, "segment", None)
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # no signature to read: let the call decide
        params = []
    takes_state = not params or any(  # a wrapper's **kwargs passes it on
        p.name == "state" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params
    )
    if not takes_state or not isinstance(segment, int) or segment <= 0:
        raise ConfigError(
            "streaming generation (--stream) needs a model whose memory carries the history "
            f"from one call to the next (model.type: titans); this {type(model).__name__} "
            "model has none: leave out --stream"
        )
    return segment


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus to -inf (rows are independent).

    Ties are broken by the lower id, as `argmax` does, so `top_k=1` and `top_p=0` keep exactly
    the token greedy decoding would pick; the nucleus is the smallest set whose mass reaches
    `top_p`, never empty.
    """
    check_sampling(top_k=top_k, top_p=top_p)
    vocab = logits.shape[-1]
    keep_k = top_k if top_k is not None and top_k < vocab else None
    keep_p = top_p if top_p is not None and top_p < 1.0 else None
    if keep_k is None and keep_p is None:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    drop = torch.zeros_like(sorted_logits, dtype=torch.bool)
    if keep_k is not None:
        drop[..., keep_k:] = True
    if keep_p is not None:
        probs = torch.softmax(sorted_logits.masked_fill(drop, float("-inf")), dim=-1)
        drop |= (probs.cumsum(dim=-1) - probs) >= keep_p  # the mass before it already suffices
    drop[..., 0] = False
    return logits.masked_fill(torch.empty_like(drop).scatter_(-1, order, drop), float("-inf"))


def _next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    # Shift by the max first: a tiny temperature then gives -inf, never inf - inf = NaN.
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    probs = torch.softmax(filter_logits(logits, top_k, top_p), dim=-1)
    try:
        return torch.multinomial(probs, num_samples=1, generator=generator)
    except RuntimeError as exc:
        if "inf" in str(exc) or "nan" in str(exc):
            raise NeatError(
                "the model's next-token probabilities are NaN or infinite: its weights or "
                "activations overflowed; use another checkpoint"
            ) from None
        raise


@torch.no_grad()
def iter_tokens(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    block_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    cuda_graph: bool = True,
    stream: bool = False,
) -> Generator[torch.Tensor, None, None]:
    """Yield each next token (B, 1) as soon as it is sampled; temperature 0 means greedy.

    `use_cache=False` recomputes the window at every step (the reference the cached path is
    tested against). On a GPU the cached one-token step is replayed from a CUDA graph unless
    `cuda_graph=False`.

    `stream=True` (a model with `segment` and a `state`: titans) conditions on the whole
    history, not a window: every full segment before the last one is read once, in order, and
    its state kept; each step runs only the rest (1 to `segment` tokens) on that state. The
    tokens are those of one call over the whole history, as the state is exact at segment
    boundaries; `block_size` is then unused."""
    check_sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    segment = check_stream(model) if stream else 0
    was_training = model.training
    model.eval()
    ids = input_ids
    make_cache = getattr(model, "make_cache", None) if use_cache and not stream else None
    cache = make_cache() if make_cache is not None and ids.shape[1] <= block_size else None
    graphed: GraphedDecodeStep | None = None
    state = None  # stream: the memory after ids[:, :committed]
    committed = 0
    try:
        for step in range(max_new_tokens):
            if cache is not None and ids.shape[1] > block_size:
                cache, graphed = None, None  # the window slides from here: every position moves
            if stream:
                while ids.shape[1] - committed > segment:
                    state = model(ids[:, committed : committed + segment], state=state)["state"]
                    committed += segment
                logits = model(ids[:, committed:], state=state)["logits"][:, -1, :].float()
            elif cache is None:
                logits = model(ids[:, -block_size:])["logits"][:, -1, :].float()
            elif graphed is not None:
                logits = graphed.step(ids[:, -1:])
            else:  # the prompt at the first step, then only the newest token
                out = model(ids if step == 0 else ids[:, -1:], cache=cache)
                logits = out["logits"][:, -1, :].float()
                if step == 0 and cuda_graph and ids.is_cuda and ids.shape[1] < block_size:
                    graphed = GraphedDecodeStep(model, cache, ids.shape[0], ids.device)
            next_id = _next_token(logits, temperature, top_k, top_p, generator)
            ids = torch.cat([ids, next_id], dim=1)
            yield next_id
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    block_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    cuda_graph: bool = True,
    stream: bool = False,
) -> torch.Tensor:
    """Extend `input_ids` (B, T) by `max_new_tokens`; temperature 0 means greedy; `stream`:
    see `iter_tokens`."""
    new = list(
        iter_tokens(
            model,
            input_ids,
            max_new_tokens,
            block_size=block_size,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
            use_cache=use_cache,
            cuda_graph=cuda_graph,
            stream=stream,
        )
    )
    return torch.cat([input_ids, *new], dim=1)


class TextStream:
    """Decodes ids as they arrive into pieces whose concatenation is `decode(all ids)`.

    A multi-byte character split over tokens (byte or byte-level BPE tokenizers) decodes to
    U+FFFD until it is complete, so a piece is held back while the text ends in one. Each
    piece is the decode of a short window that starts one emitted piece earlier, so
    tokenizers that drop or add a leading space at the start of a text are handled too.
    """

    # More tokens than any character spans: past it the tail is garbage, shown as it is.
    HOLD_LIMIT = 32

    def __init__(self, tokenizer: ITokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # end of what has been shown

    def push(self, ids: Sequence[int]) -> str:
        """The new text that `ids` complete ("" while a character is still incomplete)."""
        self._ids.extend(ids)
        return self._advance(final=False)

    def finish(self) -> str:
        """Whatever is still held back (an incomplete character shows as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        decode = self._tokenizer.decode
        text = decode(self._ids[self._prefix :])
        held = len(self._ids) - self._read
        if not final and text.endswith("\ufffd") and held < self.HOLD_LIMIT:
            return ""
        shown = decode(self._ids[self._prefix : self._read])
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(shown) :]
