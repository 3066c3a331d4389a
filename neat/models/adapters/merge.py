"""`neat checkpoints merge-lora`: a LoRA run's checkpoint folded into a plain model.

The merged run has the base architecture's tensor names and no `finetune:` section, so it
loads wherever a base model does (`neat generate`, `model.init_from`, `export-hf`) with no
adapter code, at the base model's inference cost.
"""

from __future__ import annotations

from pathlib import Path

import structlog
import yaml

from neat.config import validate_config
from neat.config.finetune import FinetuneConfig
from neat.errors import ConfigError
from neat.interfaces.records import TrainState
from neat.models.adapters.lora import LoRALinear, merge_lora
from neat.models.load import load_trained_model
from neat.persistence import Checkpointer, read_checkpoint_meta, resolve_checkpoint
from neat.persistence.files import check_out_free, staged_folder
from neat.persistence.manifest import CHECKPOINTS_DIR, CONFIG_FILE, TOKENIZER_FILE

__all__ = ["merge_lora_checkpoint"]

log = structlog.get_logger(__name__)

_HEADER = "# neat checkpoints merge-lora of {source}: the adapters folded into the weights\n"


def merge_lora_checkpoint(checkpoint: Path, out: Path) -> Path:
    """Write `out`, a new run folder with one weights-only checkpoint (at the source's step)
    whose weights are W + (alpha / rank) B A; returns that checkpoint's path."""
    checkpoint, out = Path(checkpoint), Path(out)
    check_out_free(out)
    path = resolve_checkpoint(checkpoint)
    model, tokenizer, config = load_trained_model(path)
    if config.finetune.method != "lora":
        raise ConfigError(
            f"checkpoint {path} was trained with finetune.method: {config.finetune.method}, "
            "not lora: there are no LoRA adapters to merge"
        )
    wrapped = {name for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    merge_lora(model)
    raw = config.model_dump(mode="json")
    if "lm_head" in wrapped and raw["model"].get("tie_embeddings"):
        raw["model"]["tie_embeddings"] = False  # the merged head has a weight of its own
    raw["finetune"] = FinetuneConfig().model_dump(mode="json")
    raw["model"]["init_from"] = None  # the weights are all here now
    final = out.resolve()
    merged = validate_config(raw, base_dir=final, source=str(path))
    step = int(read_checkpoint_meta(path).get("step", 0))
    with staged_folder(out) as tmp:
        text = yaml.safe_dump(raw, sort_keys=False)
        (tmp / CONFIG_FILE).write_text(_HEADER.format(source=path) + text, encoding="utf-8")
        tokenizer.save(tmp / TOKENIZER_FILE)
        extra = {CONFIG_FILE: tmp / CONFIG_FILE, TOKENIZER_FILE: tmp / TOKENIZER_FILE}
        saver = Checkpointer(tmp / CHECKPOINTS_DIR, metadata=merged.model_dump(mode="json"))
        saver.save(TrainState(step=step), model, None, extra)
    log.info("lora_merged", source=str(path), out=str(out))
    return resolve_checkpoint(out)
