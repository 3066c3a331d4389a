"""How double-integrator problems and answers are written, and the five checks an answer's
format must pass (the tags, their order, nothing else, the count, the bounds)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from neat.data.double_integrator.spec import DoubleIntegratorSourceConfig

__all__ = [
    "CONTROLS_CLOSE",
    "CONTROLS_OPEN",
    "REASONING_CLOSE",
    "REASONING_OPEN",
    "FormatCheck",
    "check_format",
    "completion_text",
    "format_number",
    "parse_controls",
    "prompt_text",
]

REASONING_OPEN, REASONING_CLOSE = "<REASONING>", "</REASONING>"
CONTROLS_OPEN, CONTROLS_CLOSE = "<CONTROLS>", "</CONTROLS>"
TAGS = (REASONING_OPEN, REASONING_CLOSE, CONTROLS_OPEN, CONTROLS_CLOSE)

# One reasoning block, then one controls block, nothing around them (whitespace between).
_PROPER = re.compile(
    rf"{re.escape(REASONING_OPEN)}.*?{re.escape(REASONING_CLOSE)}\s*"
    rf"{re.escape(CONTROLS_OPEN)}.*?{re.escape(CONTROLS_CLOSE)}",
    re.DOTALL,
)
# A plain decimal number: float() alone would also take "nan", "inf" and "1_0".
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def format_number(value: float, decimals: int) -> str:
    """`value` to `decimals` places, zero written without a sign ("0.00", never "-0.00")."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def prompt_text(position: float, velocity: float, cfg: DoubleIntegratorSourceConfig) -> str:
    """The question, short because a char-level model reads every character of it."""
    x, v = format_number(position, cfg.decimals), format_number(velocity, cfg.decimals)
    return (
        f"Steer x''=u from x={x}, v={v} to 0 in {cfg.horizon:g} s; "
        f"{cfg.steps} controls in [{-cfg.bound:g}, {cfg.bound:g}].\n"
    )


def completion_text(
    position: float, velocity: float, controls: Sequence[float], cfg: DoubleIntegratorSourceConfig
) -> str:
    """The answer: a one-line reasoning that names the ramp (its first value, its change per
    step, and its last control as written, so that a small model can stop at the 50th
    control by value rather than count), then the controls, then a newline. `position` and
    `velocity` are the problem's, for the reasoning."""
    del position, velocity  # the ramp says it all; kept so the reasoning may grow
    places = cfg.decimals + 1
    first = controls[0] if controls else 0.0
    last = controls[-1] if controls else 0.0
    slope = (last - first) / (len(controls) - 1) if len(controls) > 1 else 0.0
    reasoning = (
        f"min energy: u starts at {format_number(first, places)}, "
        f"changes by {format_number(slope, places)} per step "
        f"and ends at {format_number(last, cfg.decimals)}"
    )
    numbers = ",".join(format_number(u, cfg.decimals) for u in controls)
    return f"{REASONING_OPEN}{reasoning}{REASONING_CLOSE}{CONTROLS_OPEN}{numbers}{CONTROLS_CLOSE}\n"


@dataclass(frozen=True)
class FormatCheck:
    """The five checks of one answer and its controls (None unless every item parses)."""

    reasoning_tags: bool
    control_tags: bool
    proper_format: bool
    exact_count: bool
    within_bounds: bool
    controls: list[float] | None

    @property
    def all_ok(self) -> bool:
        return (
            self.reasoning_tags
            and self.control_tags
            and self.proper_format
            and self.exact_count
            and self.within_bounds
        )


def _block(text: str, open_tag: str, close_tag: str) -> str | None:
    """What lies between the first `open_tag` and the first `close_tag` after it."""
    start = text.find(open_tag)
    if start < 0:
        return None
    end = text.find(close_tag, start + len(open_tag))
    return None if end < 0 else text[start + len(open_tag) : end]


def parse_controls(text: str) -> list[float] | None:
    """The numbers of the first controls block, or None when it is missing or any
    comma-separated item is not a finite number."""
    block = _block(text, CONTROLS_OPEN, CONTROLS_CLOSE)
    if block is None:
        return None
    values = []
    for item in block.split(","):
        item = item.strip()
        if not _NUMBER.fullmatch(item):
            return None
        value = float(item)
        if not math.isfinite(value):  # e.g. 1e999
            return None
        values.append(value)
    return values


def check_format(text: str, *, steps: int, bound: float) -> FormatCheck:
    """The five checks: both reasoning tags (open first), both control tags (open first), the
    text is exactly one reasoning block then one controls block, exactly `steps` numbers, all
    in [-bound, bound]."""
    stripped = text.strip()
    controls = parse_controls(text)
    proper = _PROPER.fullmatch(stripped) is not None and all(
        stripped.count(tag) == 1 for tag in TAGS
    )
    return FormatCheck(
        reasoning_tags=_block(text, REASONING_OPEN, REASONING_CLOSE) is not None,
        control_tags=_block(text, CONTROLS_OPEN, CONTROLS_CLOSE) is not None,
        proper_format=proper,
        exact_count=controls is not None and len(controls) == steps,
        within_bounds=controls is not None and all(-bound <= u <= bound for u in controls),
        controls=controls,
    )
