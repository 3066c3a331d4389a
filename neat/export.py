"""Exporting a trained model for inference outside neat (ONNX, TorchScript), checked for parity.

The exported graph maps token ids (batch, seq) int64 to logits (batch, seq, vocab) float32,
with batch and seq dynamic. An export is only kept once it reproduces the PyTorch model's
logits at two different shapes: a tracer can silently bake a shape or a data-dependent branch
into the graph, and only running the file at another shape shows it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re
import shutil
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from neat.errors import ConfigError, NeatError

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_TOLERANCE",
    "EXPORT_PACKAGES",
    "FORMATS",
    "ExportError",
    "ExportResult",
    "Format",
    "LogitsOnly",
    "check_parity",
    "default_output",
    "export_checkpoint",
    "export_model",
    "parity_shapes",
]

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
SUFFIXES: dict[Format, str] = {"onnx": ".onnx", "torchscript": ".pt"}
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
INSTALL_HINT = "pip install 'neat[export]'"


class ExportError(NeatError):
    """The model cannot be exported, or the exported file does not match it."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size_bytes: int
    shapes: tuple[tuple[int, int], ...]
    max_abs_diff: float


class LogitsOnly(nn.Module):
    """The model as a tensor -> tensor function: exporters need one output, not GPT's dict
    (whose loss is None without targets)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids)["logits"]
        return logits.float()


def model_type(model: nn.Module) -> str:
    """The config's `model.type` (gpt, blt, titans, ...), else the class name."""
    kind = getattr(getattr(model, "cfg", None), "type", None)
    return str(kind) if kind is not None else type(model).__name__


def require_onnx() -> None:
    """ONNX export needs the optional `export` extra; say how to get it, not ImportError.
    Imported, not just looked up: a half-installed package fails here, not mid-export."""
    missing = []
    for name in EXPORT_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"ONNX export needs {', '.join(missing)}, which {verb} not installed: {INSTALL_HINT}"
        )


def parity_shapes(batch: int, seq_len: int, block_size: int) -> tuple[tuple[int, int], ...]:
    """The export shape, one differing in both axes (so a graph with a baked-in shape fails
    the check) and the full context when neither reaches it (a table sliced to the traced
    length fails there)."""
    other_batch = 1 if batch > 1 else 2
    other_seq = seq_len // 2 if seq_len > 1 else min(2, block_size)
    shapes = [(batch, seq_len), (other_batch, other_seq)]
    if max(seq_len, other_seq) < block_size:
        shapes.append((1, block_size))
    return tuple(shapes)


def default_output(checkpoint: Path, fmt: Format) -> Path:
    """`<run>/export/model.onnx` (or `model.pt`) for a checkpoint `<run>/checkpoints/step_N`."""
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return run / "export" / f"model{SUFFIXES[fmt]}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress prints, tracer warnings and registry log lines (torchvision
    ops) say nothing a user of `neat export` can act on."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    """One line: the root cause and the innermost neat source line that failed (the model
    operation a tracer could not follow), without the exporters' pages of advice."""
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root)
    if "## Exception summary" in text:  # torch.onnx's report: keep its summary only
        text = text.split("## Exception summary", 1)[1].split("(Refer to", 1)[0]
    fixed = re.search(
        r"marked (\w+) as dynamic but your code specialized it to be a constant "
        r"\((\d+)\)",
        text,
    )
    if fixed:  # torch.export's "Constraints violated": say what it means for this model
        text = (
            f"the model's code fixes the {fixed.group(1)} axis to {fixed.group(2)} (a Python "
            "loop or branch over its length), so no graph with a dynamic "
            f"{fixed.group(1)} axis exists"
        )
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    where = ""
    if "Traceback of TorchScript" in text:  # the cause is last, the frames name modules
        modules = re.findall(r'File "code/__torch__/(neat/[^"]+\.py)"', text)
        where = f" (in {modules[-1]})" if modules else ""
        lines = lines[-1:]
    message = f"{type(root).__name__}: {lines[0] if lines else ''}"[:400]
    frames = [
        f
        for f in traceback.extract_tb(root.__traceback__)
        if f"{os.sep}neat{os.sep}" in f.filename
        and "site-packages" not in f.filename
        and Path(f.filename).resolve() != Path(__file__).resolve()
    ]
    if frames:
        here = frames[-1]
        source = here.filename.split(f"{os.sep}neat{os.sep}", 1)[-1]
        where = f" (at neat/{source}:{here.lineno}: {(here.line or '').strip()})"
    return message + where


def export_model(
    model: nn.Module,
    fmt: Format,
    out: Path,
    *,
    seq_len: int,
    batch: int = 2,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write `model` (eval, fp32, CPU) to `out` as `fmt` with dynamic batch and seq axes.

    ONNX goes through torch.export (`dynamo=True`): on torch 2.13 the legacy TorchScript-based
    exporter has no symbolic for aten::rms_norm at the usual opsets and bakes RoPE's table
    slice at the traced length, while torch.export keeps seq symbolic up to block_size.
    TorchScript is `torch.jit.trace` of `LogitsOnly`: our models' configs and caches are not
    scriptable, and their shape arithmetic is traced as size ops.
    """
    wrapper = LogitsOnly(model).eval()
    ids = torch.randint(0, _vocab_size(model), (batch, seq_len), dtype=torch.long)
    block_size = int(getattr(model, "block_size", seq_len))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet(), torch.no_grad():
            if fmt == "onnx":
                require_onnx()
                dims = {
                    0: torch.export.Dim("batch", min=1),
                    1: torch.export.Dim("seq", min=1, max=max(block_size, seq_len)),
                }
                # torch.export specialises an axis of size 1 to a constant: trace with >= 2
                example = torch.randint(
                    0, _vocab_size(model), (max(batch, 2), max(seq_len, min(2, block_size)))
                )
                _to_onnx(wrapper, example, dims, out, opset)
            else:
                traced = torch.jit.trace(wrapper, (ids,), check_trace=False)  # type: ignore[no-untyped-call]
                torch.jit.save(traced, str(out))
    except NeatError:
        raise
    except Exception as exc:
        raise ExportError(
            f"model type {model_type(model)!r} cannot be exported to {fmt}: {_reason(exc)}"
        ) from exc
    return out


def _to_onnx(
    wrapper: nn.Module, ids: torch.Tensor, dims: dict[int, Any], out: Path, opset: int
) -> None:
    """torch.export first, then the ONNX translation: given the model itself, torch.onnx
    retries other capture strategies when the dynamic axes fail, and its eventual error hides
    the first, clearest one (an axis the model's code fixes)."""
    program = torch.export.export(wrapper, (ids,), dynamic_shapes={"input_ids": dims})
    onnx_program = torch.onnx.export(
        program,
        (ids,),
        dynamo=True,
        input_names=["input_ids"],
        output_names=["logits"],
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    assert onnx_program is not None
    onnx_program.save(str(out))


def _vocab_size(model: nn.Module) -> int:
    vocab = getattr(model, "vocab_size", None)
    if not isinstance(vocab, int):
        raise ExportError(f"model type {model_type(model)!r} has no vocab_size to draw ids from")
    return vocab


def _runner(fmt: Format, path: Path) -> Any:
    """A callable ids (numpy int64) -> logits tensor, reading the exported file as a user
    would: ONNX Runtime on the CPU, or torch.jit.load."""
    if fmt == "onnx":
        require_onnx()
        import onnxruntime  # type: ignore[import-untyped]

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return lambda ids: torch.from_numpy(session.run(None, {name: ids.numpy()})[0])
    loaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return lambda ids: loaded(ids)


def check_parity(
    model: nn.Module,
    fmt: Format,
    path: Path,
    shapes: Sequence[tuple[int, int]],
    *,
    seed: int = 0,
) -> float:
    """Max abs difference of the exported file's logits from the PyTorch model's (eval, fp32)
    over random ids at each of `shapes`; ExportError when the file cannot run one of them."""
    try:
        run = _runner(fmt, path)
    except Exception as exc:
        raise ExportError(
            f"model type {model_type(model)!r}: the exported {fmt} file does not load: "
            f"{_reason(exc)}"
        ) from exc
    wrapper = LogitsOnly(model).eval()
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch, seq in shapes:
        ids = torch.randint(0, _vocab_size(model), (batch, seq), generator=generator)
        with torch.no_grad():
            expected = wrapper(ids)
        try:
            with _quiet(), torch.no_grad():
                got = run(ids)
        except Exception as exc:
            raise ExportError(
                f"model type {model_type(model)!r}: the exported {fmt} file fails at shape "
                f"({batch}, {seq}), so the tracer fixed a shape or a branch of the model: "
                f"{_reason(exc)}"
            ) from exc
        if got.shape != expected.shape:
            raise ExportError(
                f"model type {model_type(model)!r}: the exported {fmt} file gives logits of "
                f"shape {tuple(got.shape)} at input ({batch}, {seq}), the model "
                f"{tuple(expected.shape)}: the tracer fixed a shape of the model"
            )
        diff = float((got.float() - expected).abs().max())
        if not diff <= worst:  # NaN sticks
            worst = diff
    return worst


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def export_checkpoint(
    model: nn.Module,
    fmt: Format,
    out: Path,
    *,
    block_size: int,
    seq_len: int | None = None,
    batch: int = 2,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Export, check parity at two shapes, and only then move the file(s) to `out`.

    Everything is written into a temporary folder beside `out` first (ONNX may add an
    external `.data` file named after the model file), so a failed export or check leaves
    nothing behind and an existing `out` is replaced only by a checked one.
    """
    seq_len = block_size if seq_len is None else seq_len
    if not 1 <= seq_len <= block_size:
        raise ConfigError(f"--seq-len {seq_len} must be between 1 and block_size {block_size}")
    if batch < 1:
        raise ConfigError(f"--batch {batch} must be at least 1")
    if fmt == "onnx":
        require_onnx()
    model = model.float().eval().to("cpu")
    created = _first_missing(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    kept = False
    try:
        written = export_model(
            model, fmt, staging / out.name, seq_len=seq_len, batch=batch, opset=opset
        )
        shapes = parity_shapes(batch, seq_len, block_size)
        diff = check_parity(model, fmt, written, shapes)
        if not diff <= tolerance:
            raise ExportError(
                f"model type {model_type(model)!r}: the exported {fmt} file's logits differ "
                f"from the PyTorch model's by up to {diff:.3g} (tolerance {tolerance:g}) at "
                f"shapes {', '.join(map(str, shapes))}; nothing was written"
            )
        size = _size(staging)
        for item in staging.iterdir():
            os.replace(item, out.parent / item.name)
        kept = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not kept and created is not None:
            _remove_empty(out.parent, created)
    return ExportResult(out, size, shapes, diff)


def _remove_empty(folder: Path, outermost: Path) -> None:
    """Remove `folder` and its parents up to `outermost` (the ones made for `out`) while
    they are empty: a failed export leaves the disk as it was."""
    for candidate in [folder, *folder.parents]:
        try:
            candidate.rmdir()
        except OSError:
            return
        if candidate == outermost:
            return


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (None: all do)."""
    missing = None
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing
