"""Only complete, untouched checkpoints are resumed from; everything else fails clearly."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch

from neat.errors import CheckpointError
from neat.interfaces import TrainState
from neat.persistence import Checkpointer, capture_rng_state, is_complete, resolve_checkpoint
from neat.persistence.manifest import seal_state


def _save_steps(
    ckpt_dir: Path, make_trained, steps: list[int], keep_last: int = 10
) -> Checkpointer:
    checkpointer = Checkpointer(ckpt_dir, keep_last=keep_last)
    model, optimizer = make_trained()
    for step in steps:
        checkpointer.save(TrainState(step=step, tokens_seen=step * 10), model, optimizer)
    return checkpointer


def _rewrite_state(path: Path, meta: dict[str, Any]) -> None:
    """Edit state.json as a tool would that knows to reseal it (its own digest updated)."""
    (path / "state.json").write_text(json.dumps(seal_state(meta)))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("keep_last", [1, 2, 3])
def test_retention_keeps_exactly_the_newest(ckpt_dir, make_trained, keep_last) -> None:
    _save_steps(ckpt_dir, make_trained, [1, 2, 3, 4, 5], keep_last=keep_last)
    expected = [f"step_{s}" for s in range(6 - keep_last, 6)]
    assert sorted(p.name for p in ckpt_dir.iterdir()) == expected


def test_retention_counts_only_complete_checkpoints(ckpt_dir, make_trained) -> None:
    checkpointer = _save_steps(ckpt_dir, make_trained, [1, 2], keep_last=2)
    (ckpt_dir / "step_2" / "state.json").unlink()  # step_2 no longer counts
    checkpointer.save(TrainState(step=3), *make_trained(steps=0))
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_1", "step_2", "step_3"]
    checkpointer.save(TrainState(step=4), *make_trained(steps=0))
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_3", "step_4"]


def test_step_dir_without_state_json_is_skipped(ckpt_dir, make_trained) -> None:
    checkpointer = _save_steps(ckpt_dir, make_trained, [1, 2])
    (ckpt_dir / "step_2" / "state.json").unlink()
    (ckpt_dir / "step_3").mkdir()  # an empty directory that only looks like a checkpoint

    with structlog.testing.capture_logs() as logs:
        assert checkpointer.latest() == ckpt_dir / "step_1"
    skipped = [e["path"] for e in logs if e["event"] == "checkpoint_skipped"]
    assert skipped == [str(ckpt_dir / "step_3"), str(ckpt_dir / "step_2")]
    with pytest.raises(CheckpointError, match=r"has no state.json: its save did not finish"):
        checkpointer.load(ckpt_dir / "step_2", make_trained(steps=0)[0])


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 16, len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_flip_bytes, _truncate, lambda p: p.write_bytes(b"")])
@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.safetensors", "optimizer.json"])
def test_corrupted_file_falls_back_and_load_names_it(
    ckpt_dir, make_trained, damage, victim
) -> None:
    checkpointer = _save_steps(ckpt_dir, make_trained, [1, 2])
    damage(ckpt_dir / "step_2" / victim)

    assert not is_complete(ckpt_dir / "step_2")
    assert checkpointer.latest() == ckpt_dir / "step_1"
    model, optimizer = make_trained(seed=1, steps=0)
    with pytest.raises(CheckpointError) as err:
        checkpointer.load(ckpt_dir / "step_2", model, optimizer)
    assert f"{victim} is corrupted or truncated (sha256 mismatch)" in str(err.value)
    assert checkpointer.load(ckpt_dir / "step_1", model, optimizer).step == 1


def test_invalid_safetensors_with_a_matching_hash_is_still_a_checkpoint_error(
    ckpt_dir, make_trained
) -> None:
    # A hand-edited checkpoint: the hash was updated but the file is not safetensors.
    path = _save_steps(ckpt_dir, make_trained, [1]).latest()
    assert path is not None
    (path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    meta = json.loads((path / "state.json").read_text())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    meta["files"]["model.safetensors"] = digest
    _rewrite_state(path, meta)

    with pytest.raises(CheckpointError, match=r"model.safetensors in .* is not a safetensors"):
        Checkpointer(ckpt_dir).load(path, make_trained(steps=0)[0])


def test_newer_format_version_is_refused(ckpt_dir, make_trained) -> None:
    path = _save_steps(ckpt_dir, make_trained, [1]).latest()
    assert path is not None
    meta = json.loads((path / "state.json").read_text())
    meta["format_version"] = 99
    (path / "state.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version 99 but this neat reads up to 1"):
        Checkpointer(ckpt_dir).load(path, make_trained(steps=0)[0])


def test_state_json_cannot_point_outside_the_checkpoint(ckpt_dir, make_trained) -> None:
    path = _save_steps(ckpt_dir, make_trained, [1]).latest()
    assert path is not None
    meta = json.loads((path / "state.json").read_text())
    meta["files"]["../../secret"] = "0" * 64
    (path / "state.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=re.escape("lists an invalid file '../../secret'")):
        resolve_checkpoint(path)


def test_shape_mismatch_names_the_tensor_and_both_shapes(ckpt_dir, make_trained) -> None:
    model, optimizer = make_trained(d_model=8)
    saved = Checkpointer(ckpt_dir, metadata={"model": {"d_model": 8}})
    path = saved.save(TrainState(step=1), model, optimizer)

    other, other_opt = make_trained(seed=1, steps=0, d_model=16)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    loader = Checkpointer(ckpt_dir, metadata={"model": {"d_model": 16}})
    with pytest.raises(CheckpointError) as err:
        loader.load(path, other, other_opt)
    assert str(err.value) == (
        "tensor 'wte.weight' has shape (32, 8) in the checkpoint but (32, 16) in the model: "
        "the checkpoint was saved with a different model config "
        "(model.d_model: 8 in the checkpoint, 16 now)"
    )
    for name, tensor in other.state_dict().items():  # nothing was copied
        assert torch.equal(tensor, before[name]), name


def test_missing_and_unexpected_tensors_are_named(ckpt_dir, make_trained) -> None:
    path = Checkpointer(ckpt_dir).save(TrainState(step=1), *make_trained(n_layers=1))
    deeper, _ = make_trained(steps=0, n_layers=2)
    with pytest.raises(CheckpointError, match=r"lacks 2 tensor\(s\) the model has "):
        Checkpointer(ckpt_dir).load(path, deeper)

    path = Checkpointer(ckpt_dir).save(TrainState(step=2), *make_trained(n_layers=3))
    with pytest.raises(
        CheckpointError,
        match=r"has 2 tensor\(s\) the model lacks \('blocks.2.bias', 'blocks.2.weight'\)",
    ):
        Checkpointer(ckpt_dir).load(path, deeper)


def test_resolve_accepts_run_checkpoints_and_step_dirs(ckpt_dir, make_trained) -> None:
    _save_steps(ckpt_dir, make_trained, [3, 7])
    run_dir = ckpt_dir.parent
    assert resolve_checkpoint(run_dir) == ckpt_dir / "step_7"
    assert resolve_checkpoint(ckpt_dir) == ckpt_dir / "step_7"
    assert resolve_checkpoint(ckpt_dir / "step_3") == ckpt_dir / "step_3"


def test_resolve_fails_clearly_without_a_checkpoint(ckpt_dir, make_trained, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=f"no complete checkpoint under {empty}"):
        resolve_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")

    _save_steps(ckpt_dir, make_trained, [1])
    (ckpt_dir / "step_1" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no complete checkpoint under .*\(incomplete or"):
        resolve_checkpoint(ckpt_dir.parent)
    # An explicitly named checkpoint fails with its own reason instead of falling back.
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupted"):
        resolve_checkpoint(ckpt_dir / "step_1")


def test_leftover_tmp_dirs_are_removed_unless_their_process_lives(ckpt_dir) -> None:
    ckpt_dir.mkdir(parents=True)
    dead = ckpt_dir / f".tmp-step_4-{_dead_pid()}"
    live = ckpt_dir / f".tmp-step_5-{os.getppid()}"
    for leftover in (dead, live):
        leftover.mkdir()
        (leftover / "model.safetensors").write_bytes(b"partial")

    with structlog.testing.capture_logs() as logs:
        Checkpointer(ckpt_dir)
    assert not dead.exists()
    assert live.exists()  # another process may be saving into it right now
    assert any(e["event"] == "checkpoint_dir_removed" and e["path"] == str(dead) for e in logs)


def test_checkpoint_moved_aside_by_a_crashed_resave_is_restored(ckpt_dir, make_trained) -> None:
    _save_steps(ckpt_dir, make_trained, [1])
    aside = ckpt_dir / f".tmp-replaced-step_1-{_dead_pid()}"
    (ckpt_dir / "step_1").rename(aside)

    checkpointer = Checkpointer(ckpt_dir)
    assert not aside.exists()
    assert checkpointer.latest() == ckpt_dir / "step_1"


# -- tampered or damaged state.json: a CheckpointError naming the file, never a traceback --


def _saved(ckpt_dir: Path, make_trained) -> tuple[Path, dict[str, Any]]:
    model, optimizer = make_trained()
    state = TrainState(step=1, tokens_seen=10, rng_state=capture_rng_state())
    path = Checkpointer(ckpt_dir).save(state, model, optimizer)
    return path, json.loads((path / "state.json").read_text())


def test_an_edited_state_json_is_detected(ckpt_dir, make_trained) -> None:
    path, meta = _saved(ckpt_dir, make_trained)
    meta["step"] = 1000  # the other files still hash as recorded
    (path / "state.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"state\.json was modified after it was written"):
        Checkpointer(ckpt_dir).load(path, *make_trained(steps=0))
    assert not is_complete(path)


def test_a_state_json_without_its_digest_still_loads(ckpt_dir, make_trained) -> None:
    path, meta = _saved(ckpt_dir, make_trained)  # as neat wrote them before the digest
    del meta["state_sha256"]
    (path / "state.json").write_text(json.dumps(meta))
    assert Checkpointer(ckpt_dir).load(path, *make_trained(steps=0)).step == 1


def _garbage_rng(meta: dict[str, Any]) -> None:
    meta["rng_state"]["torch"] = "AAAA"


def _garbage_python_rng(meta: dict[str, Any]) -> None:
    meta["rng_state"]["python"] = {"version": 3, "internal": "x", "gauss_next": None}


def _config_of_the_wrong_type(meta: dict[str, Any]) -> None:
    meta["config"] = ["model", "gpt"]


def _missing_data_state(meta: dict[str, Any]) -> None:
    del meta["data_state"]


def _step_is_a_bool(meta: dict[str, Any]) -> None:
    meta["step"] = True


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_garbage_rng, r"the RNG state in .*state\.json is invalid"),
        (_garbage_python_rng, r"the RNG state in .*state\.json is invalid"),
        (_config_of_the_wrong_type, r"state\.json has an invalid 'config' \(list\)"),
        (_missing_data_state, r"holds weights only \(.*state\.json has no data_state\)"),
        (_step_is_a_bool, r"state\.json has an invalid 'step'"),
    ],
)
def test_tampered_state_json_is_a_checkpoint_error(ckpt_dir, make_trained, tamper, message) -> None:
    path, meta = _saved(ckpt_dir, make_trained)
    tamper(meta)
    _rewrite_state(path, meta)  # resealed: only the checks of the content can catch it
    with pytest.raises(CheckpointError, match=message):
        Checkpointer(ckpt_dir).load(path, *make_trained(steps=0))


def test_deeply_nested_state_json_is_a_checkpoint_error(ckpt_dir, make_trained) -> None:
    path, _ = _saved(ckpt_dir, make_trained)
    (path / "state.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"state\.json is nested too deeply"):
        Checkpointer(ckpt_dir).load(path, make_trained(steps=0)[0])
    assert not is_complete(path)


def test_a_pickle_renamed_to_safetensors_is_named_as_such(ckpt_dir, make_trained) -> None:
    path, meta = _saved(ckpt_dir, make_trained)
    model = make_trained(steps=0)[0]
    torch.save(model.state_dict(), path / "model.safetensors")
    meta["files"]["model.safetensors"] = hashlib.sha256(
        (path / "model.safetensors").read_bytes()
    ).hexdigest()
    _rewrite_state(path, meta)
    with pytest.raises(CheckpointError, match=r"model\.safetensors in .* is not a safetensors"):
        Checkpointer(ckpt_dir).load(path, model)


class _Counter(torch.nn.Module):
    """A float weight and an integer buffer (a step counter, token ids, a mask)."""

    def __init__(self, dtype: torch.dtype, first: int = 0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.register_buffer("count", torch.tensor([first, 1, 2], dtype=dtype))


def test_integer_tensors_are_never_cast_on_load(ckpt_dir) -> None:
    saved = _Counter(torch.int64, first=2**40)  # overflows int32: a silent cast would wrap
    path = Checkpointer(ckpt_dir).save(TrainState(step=1), saved, None)
    narrower = _Counter(torch.int32)
    with pytest.raises(CheckpointError, match=r"'count' is int64 in the checkpoint but int32"):
        Checkpointer(ckpt_dir).load(path, narrower)
    assert narrower.count.tolist() == [0, 1, 2]  # untouched by the failed load

    half = Checkpointer(ckpt_dir).save(TrainState(step=2), _Counter(torch.int64).half(), None)
    wider = _Counter(torch.int64)  # float16 -> float32 still casts, as before
    Checkpointer(ckpt_dir).load(half, wider)
    assert wider.weight.dtype == torch.float32


def test_retention_keeps_the_branch_being_continued(ckpt_dir, make_trained) -> None:
    """Saved 10..60, then resumed from step_20 and saved 30 and 40: those two are the
    newest, so keep_last=2 keeps them and deletes the abandoned 50 and 60."""
    _save_steps(ckpt_dir, make_trained, [10, 20, 30, 40, 50, 60])
    checkpointer = Checkpointer(ckpt_dir, keep_last=2)
    model, optimizer = make_trained(steps=0)
    checkpointer.load(ckpt_dir / "step_20", model, optimizer)
    checkpointer.save(TrainState(step=30), model, optimizer)
    checkpointer.save(TrainState(step=40), model, optimizer)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_30", "step_40"]
    assert checkpointer.latest() == ckpt_dir / "step_40"
    meta = json.loads((ckpt_dir / "step_40" / "state.json").read_text())
    assert meta["parent"] == "step_30"
    assert json.loads((ckpt_dir / "step_30" / "state.json").read_text())["parent"] == "step_20"
