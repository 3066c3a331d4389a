"""`neat checkpoints ...`: look inside a checkpoint without loading a model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from neat.cli.common import user_errors
from neat.errors import CheckpointError

if TYPE_CHECKING:
    from rich.console import Console

    from neat.models.hf import ConversionReport

__all__ = ["checkpoints", "describe_checkpoint"]

# safetensors' dtype codes as torch spells them
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _header(path: Path) -> dict[str, tuple[list[int], str]]:
    """name -> (shape, dtype) from a safetensors header, without reading tensor data."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()
            slices = {name: f.get_slice(name) for name in names}
            return {
                n: (list(s.get_shape()), _DTYPES.get(s.get_dtype(), s.get_dtype()))
                for n, s in slices.items()
            }
    except Exception as exc:  # SafetensorError derives from Exception only
        raise CheckpointError(f"checkpoint file {path} cannot be read ({exc})") from exc


def _tensor_rows(path: Path, aliases: Mapping[str, str]) -> list[dict[str, Any]]:
    """Name, shape, dtype and size of every model tensor; a tied name shows the tensor it
    shares and counts no parameters of its own."""
    header = _header(path)
    names = {**{n: None for n in header}, **aliases}
    rows = []
    for name, tied_to in names.items():
        shape, dtype = header.get(tied_to or name, ([], "?"))
        params = 0 if tied_to else _numel(shape)
        rows.append(
            {"name": name, "shape": shape, "dtype": dtype, "params": params, "tied_to": tied_to}
        )
    return sorted(rows, key=lambda row: str(row["name"]))


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """Everything `inspect` shows about the checkpoint PATH resolves to, as JSON values."""
    from neat.persistence import FORMAT_VERSION, pending_migrations, resolve_checkpoint
    from neat.persistence.manifest import MODEL_FILE, STATE_FILE

    checkpoint = resolve_checkpoint(path)  # verifies every file's sha256 and state.json
    meta = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    if meta.get("format") == "dcp":
        raise CheckpointError(
            f"checkpoint {checkpoint} is sharded (checkpoint.format: dcp, saved by "
            f"{meta.get('dcp', {}).get('world_size', '?')} processes); run `neat checkpoints "
            f"consolidate {checkpoint}` and inspect the checkpoint it writes"
        )
    tensors = _tensor_rows(checkpoint / MODEL_FILE, meta.get("tensor_aliases", {}))
    config = meta.get("config")
    version = meta["format_version"]
    return {  # a weights-only checkpoint has no step, tokens or metrics: shown as none yet
        "path": str(checkpoint),
        "format_version": version,
        "current_format_version": FORMAT_VERSION,
        "migrations": pending_migrations({t["name"]: t["shape"] for t in tensors}, version),
        "step": meta.get("step", 0),
        "tokens_seen": meta.get("tokens_seen", 0),
        "created": meta.get("created"),
        "torch_version": meta.get("torch_version"),
        "metrics": meta.get("metrics", {}),
        "best_val_loss": meta.get("best_val_loss"),
        "model_config": config.get("model") if isinstance(config, Mapping) else None,
        "files": sorted(meta["files"]),
        "parameters": sum(t["params"] for t in tensors),
        "tensors": tensors,
    }


def _version_line(info: Mapping[str, Any]) -> str:
    version, current = info["format_version"], info["current_format_version"]
    if version == current:
        return f"{version} (current)"
    migrations = ", ".join(info["migrations"]) or "none recognises its tensor names"
    return f"{version} (current {current}; loading migrates it: {migrations})"


def _summary_lines(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    metrics = " ".join(f"{k}={_number(v)}" for k, v in info["metrics"].items()) or "-"
    best = info["best_val_loss"]
    return [
        ("checkpoint", info["path"]),
        ("format", _version_line(info)),
        ("step", str(info["step"])),
        ("tokens seen", f"{info['tokens_seen']:,}"),
        ("created", str(info["created"] or "-")),
        ("metrics", metrics),
        ("best val_loss", "-" if best is None else _number(best)),
        ("parameters", f"{info['parameters']:,} ({_tensor_count(info['tensors'])})"),
    ]


def _tensor_count(tensors: list[Mapping[str, Any]]) -> str:
    tied = sum(1 for t in tensors if t["tied_to"])
    return f"{len(tensors) - tied} tensors" + (f", {tied} tied" if tied else "")


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _config_lines(config: Mapping[str, Any] | None) -> list[str]:
    if config is None:
        return ["model config: - (state.json stores no config)"]
    return ["model config:", *(f"  {k}: {json.dumps(v)}" for k, v in config.items())]


def _tensor_cells(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    shape = str(tuple(row["shape"]))  # as the loader's mismatch error writes shapes
    size = f"tied to {row['tied_to']}" if row["tied_to"] else f"{row['params']:,}"
    return row["name"], shape, row["dtype"], size


def _echo_plain(info: Mapping[str, Any]) -> None:
    width = max(len(label) for label, _ in _summary_lines(info))
    for label, value in _summary_lines(info):
        click.echo(f"{label:<{width}}  {value}")
    for line in _config_lines(info["model_config"]):
        click.echo(line)
    cells = [("tensor", "shape", "dtype", "params"), *map(_tensor_cells, info["tensors"])]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    for row in cells:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_rich(console: Console, info: Mapping[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in _summary_lines(info):
        summary.add_row(label, Text(value))
    console.print(summary)
    for line in _config_lines(info["model_config"]):
        console.print(Text(line))
    table = Table("tensor", "shape", "dtype")
    table.add_column("params", justify="right")
    for row in info["tensors"]:
        table.add_row(*map(Text, _tensor_cells(row)))
    console.print(table)


@click.group()
def checkpoints() -> None:
    """Inspect checkpoints; convert them to and from Hugging Face folders; consolidate
    sharded ones."""


@checkpoints.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@user_errors
def checkpoints_inspect(path: Path, as_json: bool) -> None:
    """Show the checkpoint at PATH: a checkpoint directory, or a run (or checkpoints/)
    directory for its newest complete checkpoint. Verifies the files but loads no tensors."""
    from rich.console import Console

    info = describe_checkpoint(path)
    console = Console()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif console.is_terminal:
        _print_rich(console, info)
    else:
        _echo_plain(info)


def _report(report: ConversionReport, what: str) -> None:
    click.echo(f"wrote {report.out} ({what}, {report.layout} layout, {report.tensors} tensors)")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)


@checkpoints.command("import-hf")
@click.argument("hf_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The new run folder to write."
)
@user_errors
def checkpoints_import_hf(hf_dir: Path, out: Path) -> None:
    """Convert the Hugging Face folder HF_DIR (config.json + model.safetensors, GPT-2 or
    Llama; tokenizer.json when present) into a new neat run folder: a weights-only
    checkpoint for `neat generate --checkpoint OUT` and `model.init_from: OUT`, and a
    config.yaml whose data.path is a placeholder to replace before training."""
    from neat.models.hf import import_hf

    _report(import_hf(hf_dir, out), "neat run")


@checkpoints.command("export-hf")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The new folder to write."
)
@user_errors
def checkpoints_export_hf(path: Path, out: Path) -> None:
    """Write the checkpoint at PATH (or a run's newest) as a Hugging Face folder that
    `AutoModelForCausalLM.from_pretrained(OUT)` loads: config.json, model.safetensors and,
    for a BPE/HF tokenizer, tokenizer.json."""
    from neat.models.hf import export_hf

    _report(export_hf(path, out), "Hugging Face folder")


@checkpoints.command("consolidate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="The new run folder to write (default: RUN-consolidated-step_N beside the run).",
)
@user_errors
def checkpoints_consolidate(path: Path, out: Path | None) -> None:
    """Turn the sharded checkpoint at PATH (checkpoint.format: dcp; or a run's newest) into
    one safetensors checkpoint in a new run folder: same step, weights, optimizer and data
    position, read by `neat infer`, `export-hf`, `inspect` and `model.init_from`, and
    resumable. Reads the whole model into this one process's memory."""
    from neat.persistence.consolidate import consolidate_checkpoint

    written = consolidate_checkpoint(path, out)
    click.echo(f"wrote {written} (one safetensors checkpoint)")


@checkpoints.command("merge-lora")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The new run folder to write."
)
@user_errors
def checkpoints_merge_lora(path: Path, out: Path) -> None:
    """Fold the LoRA adapters of the checkpoint at PATH (or a run's newest) into its weights
    and write a plain model to the new run folder OUT: the base architecture's tensors, no
    finetune section, for `neat generate`, `model.init_from` and `export-hf`."""
    from neat.models.adapters.merge import merge_lora_checkpoint

    written = merge_lora_checkpoint(path, out)
    click.echo(f"wrote {written} (LoRA merged into the weights)")
