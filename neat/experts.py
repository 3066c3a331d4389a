"""`neat adapt experts`: one SVF expert per synthetic math task, trained from one base.

Transformer² (Sun, Cetin & Tang 2025) keeps one z-vector per task and mixes them at inference;
each expert here is a normal `neat train` run (`finetune.method: svf`, the base as
`model.init_from`, the data narrowed to one operation), and its z-vectors are written to
`<task>.safetensors` with the base's fingerprint, so they are refused on any other base.
`manifest.json` lists the experts, their runs and final metrics, and the classification
expert (`classifier.safetensors`, trained unless `classifier_steps` is 0): the z that makes
the base name a question's task, for `neat eval/generate --adapt classifier` (`neat.dispatch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from dependency_injector import providers
from rich.console import Console

from neat.config import ExperimentConfig, validate_config
from neat.config.finetune import DEFAULT_TARGETS
from neat.data import load_tokenizer
from neat.data.synthetic_math import (
    FORMAT_NAMES,
    LEVEL_OPERATIONS,
    OPERATIONS,
    SyntheticMathSourceConfig,
    labelled_problems,
)
from neat.dispatch import CLASSIFIER_FILE, MANIFEST, train_classifier
from neat.errors import ConfigError
from neat.files import write_json_atomic
from neat.models.adapters.svf import apply_svf, base_fingerprint, save_expert, svf_z
from neat.models.load import load_trained_model
from neat.optimization.precision import resolve_precision
from neat.persistence import read_checkpoint_meta, resolve_checkpoint
from neat.persistence.files import check_out_free
from neat.persistence.manifest import TOKENIZER_FILE
from neat.training.device import resolve_device

__all__ = ["CLASSIFIER_QUESTIONS", "MANIFEST", "build_experts", "task_config"]

log = structlog.get_logger(__name__)

CLASSIFIER_QUESTIONS = 256  # training questions per task for the classification expert


def task_config(
    base: dict[str, Any],
    checkpoint: Path,
    task: str,
    *,
    steps: int,
    lr: float,
    targets: list[str],
    objective: str = "sft",
) -> dict[str, Any]:
    """The base run's config narrowed to `task`, as an SVF run from `checkpoint`."""
    sources = base["data"].get("sources", [])
    if len(sources) != 1 or sources[0].get("type") != "synthetic_math":
        kinds = ", ".join(str(src.get("type")) for src in sources) or "none"
        raise ConfigError(
            f"neat adapt experts trains on the synthetic math tasks, and the base at "
            f"{checkpoint} was trained on data sources {kinds}; train the base on one "
            "data source of type synthetic_math"
        )
    if task not in OPERATIONS:
        raise ConfigError(f"--tasks: {task!r} is not a task; choose from {', '.join(OPERATIONS)}")
    source = dict(sources[0])
    levels = [level for level, ops in LEVEL_OPERATIONS.items() if task in ops]
    trained = [level for level in source["levels"] if level in levels]
    source["levels"] = trained or levels[:1]
    source["operations"] = [task]
    source["test"] = _task_shift(task, source)
    warmup = min(int(base["optimization"].get("warmup_steps", 0)), steps // 10)
    evaluation = dict(base.get("evaluation", {}))
    if evaluation.get("type") == "exact_match":  # the expert's own task, not the base's mix
        evaluation["source"] = source
    return {
        **base,
        "evaluation": evaluation,
        "name": f"expert-{task}",
        "data": {**base["data"], "sources": [source]},
        "model": {**base["model"], "init_from": str(checkpoint)},
        "finetune": {"method": "svf", "targets": targets, "objective": objective},
        "optimization": {
            **base["optimization"],
            "lr": lr,
            "min_lr": lr / 10,
            "warmup_steps": warmup,
        },
        "training": {**base["training"], "max_steps": steps},
    }


def _task_shift(task: str, data: dict[str, Any]) -> dict[str, Any]:
    """A test split outside the expert's training: the task's other levels, else an unseen
    format (the base's own shift may name levels that hold no problem of this task)."""
    others = [
        lv for lv, ops in LEVEL_OPERATIONS.items() if task in ops and lv not in data["levels"]
    ]
    if others:
        return {"levels": others}
    unseen = [f for f in FORMAT_NAMES if f not in data["formats"]]
    return {"formats": unseen[:1]} if unseen else dict(data["test"])


def build_experts(
    checkpoint: Path,
    tasks: list[str],
    out: Path,
    *,
    steps: int,
    lr: float,
    targets: list[str] | None = None,
    console: Console | None = None,
    classifier_steps: int = 200,
    classifier_lr: float = 1e-1,
    objective: str = "sft",
) -> Path:
    """Train and write one expert per task into `out`, then (`classifier_steps` > 0) the
    classification expert; returns the manifest's path."""
    from neat.di import build_container

    path = resolve_checkpoint(checkpoint)
    base = read_checkpoint_meta(path).get("config")
    if not isinstance(base, dict):
        raise ConfigError(f"checkpoint {path} stores no config: its data cannot be narrowed")
    targets = list(targets or DEFAULT_TARGETS)
    raws = {
        t: task_config(base, path, t, steps=steps, lr=lr, targets=targets, objective=objective)
        for t in tasks
    }
    configs = {t: validate_config(raw, source=f"{path} narrowed to {t}") for t, raw in raws.items()}
    check_out_free(out)
    out.mkdir(parents=True)
    experts: dict[str, Any] = {}
    fingerprint = ""
    for task, config in configs.items():
        run_dir = out / "runs" / task
        container = build_container(config, run_dir=run_dir, console=console)
        # the base's vocabulary: a char tokenizer fitted to one task's text would renumber it
        container.tokenizer.override(providers.Object(load_tokenizer(path / TOKENIZER_FILE)))
        trainer = container.trainer()
        trainer.restore()
        state = trainer.fit()
        model = container.model()
        fingerprint = base_fingerprint(model)
        file = out / f"{task}.safetensors"
        save_expert(file, svf_z(model), fingerprint=fingerprint, task=task)
        experts[task] = {"file": file.name, "run": str(run_dir), "steps": state.step}
        experts[task]["metrics"] = dict(state.metrics)
        log.info("expert_written", task=task, file=str(file))
    manifest: dict[str, Any] = {"base": str(path), "fingerprint": fingerprint}
    manifest.update(targets=targets, objective=objective, experts=experts)
    if classifier_steps > 0:
        manifest["classifier"] = _build_classifier(
            path, configs, targets, out, fingerprint, steps=classifier_steps, lr=classifier_lr
        )
    write_json_atomic(out / MANIFEST, manifest)
    return out / MANIFEST


def _build_classifier(
    checkpoint: Path,
    configs: dict[str, ExperimentConfig],
    targets: list[str],
    out: Path,
    fingerprint: str,
    *,
    steps: int,
    lr: float,
) -> dict[str, Any]:
    """Train the classification expert on questions of each task's own narrowed training
    distribution (the data its expert saw) and write `classifier.safetensors`; returns its
    manifest entry, with the dispatch prompt it was trained on."""
    base = next(iter(configs.values()))
    device = resolve_device(base.training.device)
    model, tokenizer, _ = load_trained_model(checkpoint, device)
    apply_svf(model, targets=targets)
    questions: dict[str, list[str]] = {}
    for task, config in configs.items():
        source = config.data.sources[0]
        assert isinstance(source, SyntheticMathSourceConfig)  # task_config checked it
        drawn = labelled_problems(source, "train", CLASSIFIER_QUESTIONS)
        questions[task] = [problem.question for problem, _ in drawn]
    zs, prompt, loss = train_classifier(
        model,
        tokenizer,
        questions,
        steps=steps,
        lr=lr,
        batch_size=base.training.batch_size,
        block_size=base.model.block_size,
        seed=base.training.seed,
        precision=resolve_precision(base.training.precision, device),
    )
    file = out / CLASSIFIER_FILE
    save_expert(file, zs, fingerprint=fingerprint, task="classifier")
    log.info("classifier_written", file=str(file), loss=loss)
    return {"file": file.name, "steps": steps, "lr": lr, "loss": loss, **prompt.as_json()}
