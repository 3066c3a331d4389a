"""Which component combinations can work with the rest of an experiment.

Run at config validation, so a combination that cannot work stops before anything is built
(an error naming the component and the fix), and one that works but is risky says so (a
warning naming the component and why). svf and mvot are training changes: their sections
become the experiment's `finetune` and `mvot` settings here, so the trainer sees one truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from neat.config.schema import ExperimentConfig

__all__ = ["ComponentWarning", "check_components", "configure_from_components"]

log = structlog.get_logger(__name__)

BYTE_TOKENIZERS = ("byte", "image_text")


@dataclass(frozen=True)
class ComponentWarning:
    component: str
    why: str

    def __str__(self) -> str:
        return f"components.{self.component}: {self.why}"


_said: set[ComponentWarning] = set()


def _on(section: Any) -> bool:
    return section is not None and section is not False


def configure_from_components(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (an experiment before validation) with `finetune` set to svf and `mvot` to the
    discrepancy loss where `model.components` turns them on."""
    model = raw.get("model")
    if not isinstance(model, dict) or model.get("type") != "neat":
        return raw
    components = model.get("components") or {}
    out = dict(raw)
    svf = components.get("svf")
    if _on(svf):
        finetune = dict(out.get("finetune") or {})
        if finetune.get("method", "full") == "full":
            finetune["method"] = "svf"
            targets = svf.get("targets") if isinstance(svf, dict) else None
            blocks = "global_model.blocks.*" if _on(components.get("blt")) else "blocks.*"
            finetune["targets"] = targets or [blocks]
        out["finetune"] = finetune
    mvot = components.get("mvot")
    if _on(mvot):
        given = dict(out.get("mvot") or {})
        if given.get("discrepancy_weight", 0):
            raise ValueError(
                "mvot.discrepancy_weight and model.components.mvot both set the discrepancy "
                "loss: set it in one place (model.components.mvot.discrepancy_weight)"
            )
        settings = mvot if isinstance(mvot, dict) else {}
        out["mvot"] = {"discrepancy_weight": 1.0, **given, **settings}
    return out


def check_components(config: ExperimentConfig) -> list[ComponentWarning]:
    """Raises ValueError for a combination that cannot work; returns the risky ones."""
    model = config.model
    components = getattr(model, "components", None)
    if components is None:
        return []
    tokenizer = config.data.tokenizer.type
    interleaved = [s for s in config.data.sources if getattr(s, "reasoning", "") == "interleaved"]
    if components.blt is not None and tokenizer not in BYTE_TOKENIZERS:
        raise ValueError(
            f"components.blt reads bytes, and data.tokenizer.type is {tokenizer}: set "
            "data.tokenizer.type: byte, or turn blt off"
        )
    if components.svf is not None:
        if not model.init_from:
            raise ValueError(
                "components.svf adapts the singular values of a trained model, and "
                "model.init_from is not set: set it to the run to adapt (the same model "
                "without svf), or turn svf off"
            )
        if config.finetune.method != "svf":
            raise ValueError(
                f"components.svf is on and finetune.method is {config.finetune.method}: "
                "remove finetune.method (svf sets it)"
            )
    elif config.finetune.method == "svf":
        raise ValueError(
            "finetune.method: svf on model.type neat is components.svf: turn it on there"
        )
    if components.mvot is not None and (tokenizer != "image_text" or not interleaved):
        raise ValueError(
            "components.mvot weighs image codes, and the data has none: it needs an image "
            "tokenizer (data.tokenizer.type: image_text) and a grid_world source with "
            "reasoning: interleaved, or turn mvot off"
        )
    warnings: list[ComponentWarning] = []
    if components.blt is None and tokenizer == "byte":
        warnings.append(
            ComponentWarning(
                "blt",
                "off on byte-level data: the backbone runs over every byte, where blt would "
                "run it over patches of several bytes (fewer positions, a longer reach)",
            )
        )
    if components.titans is not None:
        positions = model.block_size
        if components.blt is not None:
            positions = model.block_size // components.blt.fallback_patch_size
        if positions <= components.titans.segment:
            warnings.append(
                ComponentWarning(
                    "titans",
                    f"a window holds about {positions} positions and attention already "
                    f"spans a segment of {components.titans.segment}: the memory adds "
                    "nothing; lower titans.segment or raise model.block_size",
                )
            )
    if components.blt is not None and components.mvot is not None:
        warnings.append(
            ComponentWarning(
                "mvot",
                "with blt, image codes are patched together with the text bytes around them, "
                "so a patch can straddle an image boundary",
            )
        )
    for warning in warnings:
        if warning not in _said:  # validation repeats (each load of a config): say it once
            _said.add(warning)
            log.warning("component_warning", component=warning.component, why=warning.why)
    return warnings
