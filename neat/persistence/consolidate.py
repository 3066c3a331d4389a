"""`neat checkpoints consolidate`: a sharded (DCP) checkpoint as one ordinary checkpoint.

The shards are read in this one process into a model (and optimizer) rebuilt from the
checkpoint's own config, then saved by the usual Checkpointer: model.safetensors,
optimizer.safetensors + optimizer.json and the same training state, so the result is read
by every neat tool (`neat infer`, `neat checkpoints export-hf`, `inspect`, `model.init_from`)
and resumes like any one-process checkpoint. Needs the memory of the whole model (and its
optimizer state) on the CPU: it is the one place a sharded run is gathered.
"""

from __future__ import annotations

from pathlib import Path

import structlog
import torch

from neat.errors import CheckpointError
from neat.interfaces.records import TrainState
from neat.persistence import files
from neat.persistence.checkpointer import Checkpointer
from neat.persistence.files import check_out_free, staged_folder
from neat.persistence.manifest import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from neat.persistence.sharded import load_sharded

__all__ = ["consolidate_checkpoint", "default_out"]

log = structlog.get_logger(__name__)


def default_out(checkpoint: Path) -> Path:
    """`<run>-consolidated-step_<N>` beside the run folder of `checkpoint`."""
    run = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS_DIR else checkpoint
    return run.parent / f"{run.name}-consolidated-{checkpoint.name}"


def consolidate_checkpoint(source: Path, out: Path | None = None) -> Path:
    """Write the new run folder `out` holding the DCP checkpoint `source` (or a run's newest)
    as one safetensors checkpoint at the same step; returns that checkpoint's path."""
    from neat.config import build, validate_config
    from neat.data.tokenizers import load_tokenizer
    from neat.interfaces.contexts import OptimizerContext
    from neat.models.adapters.apply import apply_finetune
    from neat.models.load import build_model

    path = resolve_checkpoint(Path(source))
    meta = read_checkpoint_meta(path)
    if meta.get("format") != "dcp":
        raise CheckpointError(
            f"checkpoint {path} is already a single safetensors checkpoint: every neat tool "
            "reads it as it is"
        )
    if meta.get("config") is None:
        raise CheckpointError(f"checkpoint {path} stores no config in its {STATE_FILE}")
    out = Path(out) if out is not None else default_out(path)
    check_out_free(out)
    config = validate_config(meta["config"], source=str(path / STATE_FILE))
    tokenizer = load_tokenizer(path / TOKENIZER_FILE)
    model = build_model(config.model, tokenizer, config.training.seed)
    apply_finetune(model, config.finetune)
    optimizer: torch.optim.Optimizer | None = None
    if meta.get("dcp", {}).get("optimizer"):
        context = OptimizerContext(max_steps=config.training.max_steps)
        factory = build("optimization", config.optimization, context)
        optimizer = factory.create(model, torch.device("cpu"))
    load_sharded(model, optimizer, path, "the checkpoint's own config does not rebuild it")
    state = TrainState(
        step=meta.get("step", 0),
        tokens_seen=meta.get("tokens_seen", 0),
        data_state=meta.get("data_state", {}),
        rng_state=meta.get("rng_state", {}),
        metrics=meta.get("metrics", {}),
        best_val_loss=meta.get("best_val_loss"),
        tracker=meta.get("tracker", {}),
    )
    with staged_folder(out) as tmp:
        extra = {}
        for name in (CONFIG_FILE, TOKENIZER_FILE):  # the run folder's, as training writes
            if (path / name).is_file():
                files.copy_file(path / name, tmp / name)
                extra[name] = tmp / name
        saver = Checkpointer(tmp / CHECKPOINTS_DIR, metadata=meta["config"])
        saver.save(state, model, optimizer, extra)
    log.info("checkpoint_consolidated", source=str(path), out=str(out))
    return resolve_checkpoint(out)
