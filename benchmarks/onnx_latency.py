"""Median latency of one forward pass of a trained model in PyTorch and in ONNX Runtime (CPU).

The model is exported with `neat export`'s checked path (parity verified first), then both run
the same random ids in interleaved rounds in one process, the order alternating each round, so
a noisy neighbour on a shared CPU slows both alike:

    python benchmarks/onnx_latency.py --checkpoint runs/<run> --batch 1 --repeats 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime  # type: ignore[import-untyped]
import torch

from neat.export import LogitsOnly, export_checkpoint
from neat.inference import load_for_inference


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=None, help="default: block_size")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="for both runtimes")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, _, block_size = load_for_inference(args.checkpoint, "cpu")
    model = model.float().eval()
    seq_len = args.seq_len or block_size
    with tempfile.TemporaryDirectory() as folder:
        exported = export_checkpoint(
            model, "onnx", Path(folder) / "model.onnx", block_size=block_size, seq_len=seq_len
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(exported.path), options, providers=["CPUExecutionProvider"]
        )
    wrapper = LogitsOnly(model).eval()
    ids = torch.randint(0, model.vocab_size, (args.batch, seq_len))
    feed = {"input_ids": ids.numpy()}

    def run_torch() -> object:
        with torch.no_grad():
            return wrapper(ids)

    def run_onnx() -> object:
        return session.run(None, feed)

    for _ in range(args.warmup):
        run_torch(), run_onnx()
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for i in range(args.repeats):
        pair = [("torch", run_torch), ("onnxruntime", run_onnx)]
        for name, run in pair if i % 2 == 0 else pair[::-1]:
            times[name].append(timed(run))
    medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    result = {
        "checkpoint": str(args.checkpoint),
        "batch": args.batch,
        "seq_len": seq_len,
        "threads": args.threads,
        "repeats": args.repeats,
        "parity_max_abs_diff": exported.max_abs_diff,
        "torch_ms": round(medians["torch"], 3),
        "onnxruntime_ms": round(medians["onnxruntime"], 3),
        "torch_over_onnxruntime": round(medians["torch"] / medians["onnxruntime"], 2),
    }
    print(
        f"batch {args.batch} x seq {seq_len}, {args.threads} thread(s), median of "
        f"{args.repeats}: PyTorch {medians['torch']:.3f} ms, ONNX Runtime "
        f"{medians['onnxruntime']:.3f} ms, ratio {result['torch_over_onnxruntime']}x"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
