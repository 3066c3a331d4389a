"""The pieces of multi-process training that need no process group: launch modes, the
per-rank share of a global batch, and per-rank checkpoint state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neat.data import BatchSampler
from neat.errors import CheckpointError, ConfigError
from neat.files import sha256_file
from neat.training.distributed import (
    DistInfo,
    check_batch_divides,
    init_distributed,
    per_rank_state,
    resolve_mode,
    state_for_this_rank,
    torchrun_env,
    unwrap_model,
    wrap_model,
)

TOKENS = np.arange(2_000, dtype=np.uint16)


def test_modes_outside_and_under_torchrun() -> None:
    for setting in ("auto", "ddp", "fsdp", "none"):
        assert resolve_mode(setting, None) == "none"  # the same config runs in one process
    assert resolve_mode("auto", (0, 2, 0)) == "ddp"
    assert resolve_mode("auto", (0, 1, 0)) == "none"
    assert resolve_mode("fsdp", (1, 4, 1)) == "fsdp"
    assert resolve_mode("ddp", (0, 1, 0)) == "ddp"  # asked for: one process still wraps
    with pytest.raises(ConfigError, match="'none' but torchrun started 2 processes"):
        resolve_mode("none", (0, 2, 0))


def test_without_torchrun_nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_env() is None
    info = init_distributed("fsdp", "cpu")
    assert (info.mode, info.rank, info.world_size, info.active) == ("none", 0, 1, False)
    assert not torch.distributed.is_initialized()
    model = nn.Linear(2, 2)
    assert wrap_model(model, info) is model and unwrap_model(model) is model
    assert per_rank_state({"epoch": 1}, info) == {"epoch": 1}  # the layout checkpoints had


def test_ranks_split_each_global_batch_into_the_one_process_rows() -> None:
    whole = BatchSampler(TOKENS, batch_size=6, block_size=8, seed=3)
    parts = [
        BatchSampler(TOKENS, batch_size=6, block_size=8, seed=3, rank=r, world_size=3)
        for r in range(3)
    ]
    for _ in range(40):  # crosses an epoch end (2000 tokens / 8 / 6 = 41 batches)
        expected = whole.next_batch()
        shards = [p.next_batch() for p in parts]
        assert all(s.input_ids.shape == (2, 8) for s in shards)
        assert torch.equal(torch.cat([s.input_ids for s in shards]), expected.input_ids)
        assert torch.equal(torch.cat([s.targets for s in shards]), expected.targets)
        assert all(p.state_dict() == whole.state_dict() for p in parts)  # a global position


def test_uneven_share_of_the_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="even share"):
        BatchSampler(TOKENS, batch_size=5, block_size=8, seed=0, rank=0, world_size=2)
    check_batch_divides(8, DistInfo(world_size=4, mode="ddp"))
    with pytest.raises(ConfigError, match=r"batch_size=6 .* 4 processes .* multiple of 4"):
        check_batch_divides(6, DistInfo(world_size=4, mode="ddp"))


def test_state_for_each_rank_and_for_another_world_size() -> None:
    saved = {"world_size": 2, "ranks": [{"epoch": 0, "cursor": 7}, {"epoch": 0, "cursor": 7}]}
    two = [DistInfo(rank=r, world_size=2, mode="ddp") for r in range(2)]
    assert [state_for_this_rank(saved, info, "data positions") for info in two] == saved["ranks"]
    # one shared position (neat's sampler counts global batches): any world size continues it
    four = DistInfo(rank=3, world_size=4, mode="ddp")
    assert state_for_this_rank(saved, four, "data positions") == {"epoch": 0, "cursor": 7}
    single = {"epoch": 2, "cursor": 1}  # a one-process checkpoint resumed by many
    assert state_for_this_rank(single, four, "data positions") == single

    private = {"world_size": 2, "ranks": [{"position": 3}, {"position": 9}]}
    with pytest.raises(
        CheckpointError, match=r"each of its 2 processes.*over 4.*--nproc_per_node 2"
    ):
        state_for_this_rank(private, four, "data positions")
    with pytest.raises(CheckpointError, match="malformed"):
        state_for_this_rank({"world_size": 2, "ranks": "x"}, four, "data positions")


def test_a_dcp_state_file_may_list_only_its_own_shard_folder(tmp_path: Path) -> None:
    """state.json of checkpoint.format dcp lists `dcp/<file>`; nothing may point elsewhere,
    and a safetensors checkpoint keeps to plain names."""
    import json

    from neat.persistence.manifest import is_complete, read_checkpoint_meta, seal_state

    def checkpoint(files: dict[str, str], **meta: object) -> Path:
        path = tmp_path / f"step_{len(list(tmp_path.iterdir()))}"
        (path / "dcp").mkdir(parents=True)
        hashes = {}
        for name, text in files.items():
            (path / name).write_text(text)
            hashes[name] = sha256_file(path / name)
        state = seal_state({"format_version": 1, "files": hashes, **meta})
        (path / "state.json").write_text(json.dumps(state))
        return path

    shards = {"dcp/.metadata": "index", "dcp/__0_0.distcp": "a", "dcp/__1_0.distcp": "b"}
    good = checkpoint(shards, format="dcp")
    assert read_checkpoint_meta(good)["format"] == "dcp"
    with pytest.raises(CheckpointError, match=r"lists no model\.safetensors"):
        read_checkpoint_meta(checkpoint(shards))  # the same files, claimed as safetensors
    with pytest.raises(CheckpointError, match=r"lists no dcp/\.metadata"):
        read_checkpoint_meta(checkpoint({"dcp/__0_0.distcp": "a"}, format="dcp"))
    with pytest.raises(CheckpointError, match="invalid file"):
        read_checkpoint_meta(checkpoint({**shards, "dcp/../model.safetensors": "x"}, format="dcp"))
    with pytest.raises(CheckpointError, match="newer neat"):
        read_checkpoint_meta(checkpoint(shards, format="zarr"))
    (good / "dcp/__1_0.distcp").write_text("B")  # a shard rewritten after the save
    assert not is_complete(good)


def test_a_failed_dcp_save_leaves_only_the_checkpoints_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process, checkpoint.format dcp: a save that dies after writing a shard leaves no
    step_N and no staging folder; the one before still loads, bit for bit."""
    import neat.persistence.checkpointer as checkpointer_module
    from neat.interfaces.records import TrainState
    from neat.persistence import Checkpointer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    saver = Checkpointer(tmp_path / "checkpoints", layout="dcp")
    first = saver.save(TrainState(step=1), model, optimizer)
    assert sorted(p.name for p in (first / "dcp").iterdir()) == [".metadata", "__0_0.distcp"]

    def dies(model: nn.Module, optimizer: object, checkpoint: Path) -> dict[str, str]:
        (checkpoint / "dcp").mkdir()
        (checkpoint / "dcp/__0_0.distcp").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpointer_module, "save_sharded", dies)
    with pytest.raises(CheckpointError, match="no space left to save checkpoint step_2"):
        saver.save(TrainState(step=2), model, optimizer)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_1"]

    fresh = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state = Checkpointer(tmp_path / "checkpoints").load(
        saver.latest() or first, fresh, fresh_optimizer
    )
    assert state.step == 1
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    saved, loaded = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert all(torch.equal(saved[0][k], loaded[0][k]) for k in ("exp_avg", "exp_avg_sq", "step"))
