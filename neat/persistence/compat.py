"""Whether a checkpoint's weights mean the same thing to this run: its tokenizer.

Weights are trained on token ids. A tokenizer that maps ids differently (a corpus with one
character replaced, a BPE retrained at the same vocab_size) fits every tensor shape, so the
load succeeds and the model silently reads the wrong text. Comparing the checkpoint's saved
`tokenizer.json` with this run's tokenizer, as each saves itself, catches that.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from neat.errors import CheckpointError
from neat.interfaces import ITokenizer
from neat.persistence.manifest import TOKENIZER_FILE

__all__ = ["check_tokenizer_matches"]


def check_tokenizer_matches(checkpoint: Path, tokenizer: ITokenizer, *, fix: str) -> None:
    """CheckpointError, ending with `fix`, when `checkpoint`'s tokenizer.json is not the
    tokenizer `tokenizer` saves; a checkpoint without tokenizer.json passes (nothing to
    compare: older or hand-written checkpoints)."""
    saved_path = Path(checkpoint) / TOKENIZER_FILE
    if not saved_path.is_file():
        return
    saved = _read(saved_path)
    with tempfile.TemporaryDirectory(prefix="neat-tokenizer-") as tmp:
        current_path = Path(tmp) / TOKENIZER_FILE
        tokenizer.save(current_path)
        current = _read(current_path)
    if _canonical(saved) == _canonical(current):
        return
    raise CheckpointError(
        f"the tokenizer of checkpoint {checkpoint} ({saved_path}) maps token ids differently "
        f"from this run's tokenizer{_difference(saved, current, tokenizer)}, so its weights "
        f"would read other text than they were trained on; {fix}"
    )


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"tokenizer file {path} cannot be read ({exc})") from None


def _canonical(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _difference(saved: Any, current: Any, tokenizer: ITokenizer) -> str:
    """A short account of what differs, where the spec says it plainly."""
    if not (isinstance(saved, dict) and isinstance(current, dict)):
        return ""
    if isinstance(saved.get("chars"), list) and isinstance(current.get("chars"), list):
        old, new = saved["chars"], current["chars"]
        gone = [c for c in old if c not in new]
        added = [c for c in new if c not in old]
        if gone or added:
            return f" (characters only in the checkpoint: {gone!r}; only in this run: {added!r})"
        return " (the same characters in another order)"
    keys = sorted(k for k in {*saved, *current} if saved.get(k) != current.get(k))
    size = f"; this run's vocabulary has {tokenizer.vocab_size} tokens"
    return f" (they differ in {', '.join(keys)}{size})" if keys else ""
