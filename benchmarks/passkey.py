"""Passkey retrieval (Mohtashami & Jaggi 2023; the S-NIAH needle-in-a-haystack of Titans,
Behrouz et al. 2025): a GPT and the three Titans variants at matched size, trained at one
context length and evaluated at 1x, 4x and 16x that length.

Each sequence is filler (a short random pattern of filler tokens, repeated) with a needle,
the key marker and n passkey digits, inserted at a uniformly random depth; it ends with the
query marker and the same digits, and the model is trained and scored on those digits only.
Tokens: digits 0..9, key marker 10, query marker 11, filler 12..vocab-1. Sequence accuracy
counts rows whose every digit is the argmax under teacher forcing (the earlier digits given
as input, a standard LM eval); digit accuracy counts digits (chance 0.1, and 10^-n per
sequence). Data is generated on the fly from the seed; every model trains on the same
batches and is scored on the same held-out ones.

The GPT is evaluated as a sliding window: each answer digit sees only the train_len tokens
before it, so at 4x and 16x the needle is in its window about 1/4 and 1/16 of the time.
Titans takes the whole sequence, in train_len pieces passing its memory state along
(--stream-eval, the default) or in one call (--no-stream-eval). A model whose import fails
is reported on stderr and skipped. The GPT's width defaults to the one whose parameter
count is nearest the Titans of the same settings, run or not (--gpt-dim to fix it).

python benchmarks/passkey.py --models gpt mac mag mal --train-len 256 --steps 4000

At train_len 256 the GPT (2 layers, one head) sits on its loss plateau (ln 10 per digit) for
about 2,000 steps before it finds the needle, so give it 4,000 or more; at 64 and 128 it
leaves the plateau within a few hundred steps (CPU, batch 32, lr 1e-3).

Measured (one H200, bf16, train_len 128, 3000 steps, batch 32, lr 1e-3, 2 layers x 64),
sequence / digit accuracy at 1x, 4x, 16x: GPT (172,452 weights) 0.73 / 0.94, 0.21 / 0.34,
0.04 / 0.14; Titans (168,710) mag 0.25 / 0.76, 0.06 / 0.65, 0.01 / 0.36; mac 0.00 / 0.20,
0.00 / 0.17, 0.00 / 0.18 (just leaving the plateau); mal on the plateau (digit 0.10).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

import torch
from torch import nn

from neat.models.gpt import GPT, IGNORE_INDEX, GPTConfig

N_DIGITS = 10
KEY_MARK = 10
QUERY_MARK = 11
FILLER_START = 12
TITANS = ("mac", "mag", "mal")


def passkey_batch(
    batch: int,
    seq_len: int,
    n_digits: int,
    gen: torch.Generator,
    vocab: int,
    *,
    period: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), both (batch, seq_len) long tensors. Row b of the token stream
    (seq_len + 1 tokens; inputs are its first seq_len, targets its last seq_len) is its own
    filler pattern of `period` tokens from FILLER_START..vocab-1, repeated from a random
    phase, with `KEY_MARK d1..dn` inserted at a uniformly random depth among the tokens
    before the query, and ends with `QUERY_MARK d1..dn`. Targets are IGNORE_INDEX except the
    last n_digits, which are the digits. O(batch * seq_len), no Python loop over rows."""
    if vocab <= FILLER_START:
        raise ValueError(f"vocab must exceed {FILLER_START} (digits, two markers), got {vocab}")
    if n_digits < 1:
        raise ValueError(f"n_digits must be positive, got {n_digits}")
    haystack = seq_len - n_digits  # stream tokens before the query marker: filler + needle
    fill = haystack - (n_digits + 1)
    if fill < 0:
        raise ValueError(
            f"seq_len ({seq_len}) too short for a needle and a query of {n_digits} digits: "
            f"needs at least {2 * n_digits + 1}"
        )
    digits = torch.randint(0, N_DIGITS, (batch, n_digits), generator=gen)
    pattern = torch.randint(FILLER_START, vocab, (batch, period), generator=gen)
    phase = torch.randint(0, period, (batch, 1), generator=gen)
    depth = torch.randint(0, fill + 1, (batch, 1), generator=gen)  # needle start, uniform

    pos = torch.arange(haystack).expand(batch, haystack)
    offset = pos - depth  # position inside the needle where 0 <= offset <= n_digits
    in_needle = (offset >= 0) & (offset <= n_digits)
    # Filler continues after the needle where it left off: the needle is inserted, not
    # written over the pattern.
    filler_index = pos - (n_digits + 1) * (offset > n_digits)
    filler = pattern.gather(1, (filler_index + phase) % period)
    needle = torch.cat([torch.full((batch, 1), KEY_MARK), digits], dim=1)
    needle_tok = needle.gather(1, offset.clamp(0, n_digits))
    hay = torch.where(in_needle, needle_tok, filler)

    query = torch.cat([torch.full((batch, 1), QUERY_MARK), digits], dim=1)
    tokens = torch.cat([hay, query], dim=1)  # (batch, seq_len + 1)
    targets = torch.full((batch, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets[:, -n_digits:] = digits
    return tokens[:, :-1].contiguous(), targets


def count_params(model: nn.Module) -> int:
    num = getattr(model, "num_params", None)
    if callable(num):
        return int(num())
    return sum(int(p.numel()) for p in model.parameters())


def titans_classes() -> tuple[Any, Any]:
    """(Titans, TitansConfig); ImportError while neat.models.titans lacks them."""
    module = importlib.import_module("neat.models.titans")
    try:
        return module.Titans, module.TitansConfig
    except AttributeError as err:
        raise ImportError(str(err)) from err


def build_titans(variant: str, args: argparse.Namespace) -> nn.Module:
    titans, titans_config = titans_classes()
    cfg = titans_config(
        variant=variant,
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.dim,
        block_size=args.train_len,
        segment=args.segment,
        persistent_tokens=args.persistent_tokens,
        memory={"depth": args.memory_depth, "chunk_size": args.chunk_size},
    )
    return titans(cfg, args.vocab)  # type: ignore[no-any-return]


def build_gpt(dim: int, args: argparse.Namespace) -> GPT:
    cfg = GPTConfig(
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=dim,
        block_size=args.train_len,
        position="rope",
        bias=False,
    )
    return GPT(cfg, args.vocab)


def matched_gpt_dim(target: int, args: argparse.Namespace) -> int:
    """The GPT width (a multiple of 2 * heads, rope's even head size) whose parameter count
    is nearest `target`."""
    step: int = 2 * args.heads
    best, best_gap = step, float("inf")
    for dim in range(step, 16 * args.dim + 1, step):
        count = count_params(build_gpt(dim, args))
        if abs(count - target) < best_gap:
            best, best_gap = dim, abs(count - target)
        if count > target:  # the count grows with the width
            break
    return best


def build(name: str, args: argparse.Namespace, gpt_dim: int) -> nn.Module:
    return build_gpt(gpt_dim, args) if name == "gpt" else build_titans(name, args)


def train(model: nn.Module, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """AdamW, 50 warmup steps, grad clip 1.0; returns (final loss, seconds)."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    loss = torch.tensor(float("nan"))
    start = time.perf_counter()
    for step in range(args.steps):
        x, y = passkey_batch(args.batch, args.train_len, args.digits, gen, args.vocab)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(x, y)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if args.log_every and (step + 1) % args.log_every == 0:
            print(f"step {step + 1} loss {loss.item():.4f}", file=sys.stderr, flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return float(loss.item()), time.perf_counter() - start


def answer_logits(
    name: str, model: nn.Module, x: torch.Tensor, args: argparse.Namespace
) -> torch.Tensor:
    """Logits at the last `digits` positions of x, (batch, digits, vocab)."""
    n = args.digits
    if name == "gpt":  # sliding window: every answer position is in the last train_len
        logits: torch.Tensor = model(x[:, -args.train_len :])["logits"]
        return logits[:, -n:]
    if not args.stream_eval:
        logits = model(x)["logits"]
        return logits[:, -n:]
    state = None
    for piece in torch.split(x, args.train_len, dim=1):
        out = model(piece, state=state)
        state = out["state"]
    # The last piece holds every answer position: eval lengths are multiples of train_len.
    return out["logits"][:, -n:]  # type: ignore[no-any-return]


@torch.no_grad()
def evaluate(
    name: str, model: nn.Module, eval_len: int, args: argparse.Namespace, device: torch.device
) -> tuple[float, float, float]:
    """(sequence accuracy, digit accuracy, seconds) on held-out rows; the rows depend on the
    seed and the length only, so every model sees the same ones."""
    model.eval()
    gen = torch.Generator().manual_seed(args.seed + 1 + eval_len)
    seq_ok = digit_ok = rows = 0
    start = time.perf_counter()
    for _ in range(args.eval_batches):
        x, y = passkey_batch(args.batch, eval_len, args.digits, gen, args.vocab)
        x, y = x.to(device), y[:, -args.digits :].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            pred = answer_logits(name, model, x, args).argmax(-1)
        hit = pred == y
        seq_ok += int(hit.all(dim=1).sum())
        digit_ok += int(hit.sum())
        rows += y.shape[0]
    return seq_ok / rows, digit_ok / (rows * args.digits), time.perf_counter() - start


def importable(name: str) -> bool:
    if name == "gpt":
        return True
    try:
        titans_classes()
    except ImportError as err:
        print(f"skipping {name}: cannot import neat.models.titans ({err})", file=sys.stderr)
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["gpt", *TITANS], default=["gpt", *TITANS])
    parser.add_argument("--train-len", type=int, default=256)
    parser.add_argument("--multipliers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--digits", type=int, default=5, help="passkey digits")
    parser.add_argument("--vocab", type=int, default=32, help="digits, 2 markers, filler")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--dim", type=int, default=64, help="Titans width")
    parser.add_argument(
        "--gpt-dim", type=int, default=0, help="GPT width (0: match Titans' parameters)"
    )
    parser.add_argument("--segment", type=int, default=64, help="Titans segment length")
    parser.add_argument("--persistent-tokens", type=int, default=4)
    parser.add_argument("--memory-depth", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument(
        "--stream-eval",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Titans: evaluate in train_len pieces passing the state (else in one call)",
    )
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--log-every", type=int, default=0, help="train loss to stderr")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    models = [m for m in args.models if importable(m)]
    gpt_dim = args.gpt_dim or args.dim
    if "gpt" in models and not args.gpt_dim and importable("mac"):
        # matched to the Titans of these settings even when none runs in this process
        # (the variants differ by no weight), so runs split across processes compare
        titans = next((m for m in models if m != "gpt"), "mac")
        gpt_dim = matched_gpt_dim(count_params(build_titans(titans, args)), args)

    for name in models:
        torch.manual_seed(args.seed)
        model = build(name, args, gpt_dim).to(device)
        params = count_params(model)
        final_loss, train_s = train(model, args, device)
        for mult in args.multipliers:
            eval_len = mult * args.train_len
            seq_acc, digit_acc, eval_s = evaluate(name, model, eval_len, args, device)
            mode = "window" if name == "gpt" else ("stream" if args.stream_eval else "full")
            row = {
                "model": name,
                "params": params,
                "train_len": args.train_len,
                "eval_len": eval_len,
                "eval": mode,
                "steps": args.steps,
                "final_loss": round(final_loss, 4),
                "seq_acc": round(seq_acc, 4),
                "digit_acc": round(digit_acc, 4),
                "train_s": round(train_s, 1),
                "eval_s": round(eval_s, 1),
                "device": str(device),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
