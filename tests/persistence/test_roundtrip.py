"""Save then load gives back exactly what was saved: weights, ties, optimizer, train state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from neat.errors import CheckpointError, ConfigError
from neat.interfaces import ICheckpointer, TrainState
from neat.persistence import (
    FORMAT_VERSION,
    Checkpointer,
    capture_rng_state,
    is_complete,
    read_checkpoint_meta,
)


def _state(step: int = 2) -> TrainState:
    return TrainState(
        step=step,
        tokens_seen=64 * step,
        data_state={"epoch": 1, "offset": 17, "order": [3, 1, 2]},
        rng_state=capture_rng_state(),
        metrics={"loss": 1.5, "lr": 0.01},
        best_val_loss=2.25,
    )


def test_checkpointer_fits_the_interface(ckpt_dir: Path) -> None:
    assert isinstance(Checkpointer(ckpt_dir), ICheckpointer)


def test_round_trip_is_bit_exact_and_keeps_the_tie(ckpt_dir, make_trained, train) -> None:
    model, optimizer = make_trained(seed=0)
    saved_state = _state()
    path = Checkpointer(ckpt_dir).save(saved_state, model, optimizer)

    fresh, fresh_opt = make_trained(seed=1, steps=0)
    loaded = Checkpointer(ckpt_dir).load(path, fresh, fresh_opt)

    assert loaded == saved_state
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    assert fresh.lm_head.weight is fresh.wte.weight
    assert fresh.lm_head.weight.data_ptr() == fresh.wte.weight.data_ptr()

    # The next optimizer step must be identical: exp_avg, exp_avg_sq and step all restored.
    train(model, optimizer, 7)
    train(fresh, fresh_opt, 7)
    for (name, a), b in zip(model.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert fresh_opt.param_groups[0]["betas"] == optimizer.param_groups[0]["betas"]


def test_manifest_records_files_config_and_aliases(ckpt_dir, make_trained) -> None:
    model, optimizer = make_trained()
    config = {"model": {"d_model": 8}, "training": {"steps": 10}}
    path = Checkpointer(ckpt_dir, metadata=config).save(_state(3), model, optimizer)

    assert path == ckpt_dir / "step_3"
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
        "state.json",
    ]
    meta = read_checkpoint_meta(path)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["config"] == config
    assert meta["tensor_aliases"] == {"lm_head.weight": "wte.weight"}
    assert set(meta["files"]) == {"model.safetensors", "optimizer.json", "optimizer.safetensors"}
    assert json.loads((path / "state.json").read_text())["step"] == 3
    with safe_open(str(path / "optimizer.safetensors"), framework="pt") as f:
        assert "state.0.exp_avg" in f.keys()  # noqa: SIM118 - the handle is not iterable
    assert is_complete(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # emitted by torch's compile import
def test_compiled_model_is_saved_under_plain_keys(ckpt_dir, make_trained) -> None:
    model, _ = make_trained()
    compiled = torch.compile(model)  # the wrapper alone; nothing is compiled until a forward
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    path = Checkpointer(ckpt_dir).save(_state(), compiled, None)

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"wte.weight", "blocks.0.weight", "blocks.0.bias"} | {
            "ln_f.weight",
            "ln_f.bias",
        }
    eager, _ = make_trained(seed=5, steps=0)
    Checkpointer(ckpt_dir).load(path, eager)
    assert torch.equal(eager.wte.weight, model.wte.weight)
    recompiled = torch.compile(make_trained(seed=6, steps=0)[0])
    Checkpointer(ckpt_dir).load(path, recompiled)
    assert torch.equal(recompiled.state_dict()["_orig_mod.ln_f.weight"], model.ln_f.weight)


def test_optimizer_is_optional_but_never_silently_missing(ckpt_dir, make_trained) -> None:
    model, _ = make_trained()
    path = Checkpointer(ckpt_dir).save(_state(), model, None)
    assert not (path / "optimizer.safetensors").exists()

    fresh, fresh_opt = make_trained(seed=1, steps=0)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        Checkpointer(ckpt_dir).load(path, fresh, fresh_opt)
    assert Checkpointer(ckpt_dir).load(path, fresh).step == 2


def test_extra_files_are_copied_and_verified(ckpt_dir, make_trained, tmp_path) -> None:
    model, optimizer = make_trained()
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"vocab": 32}')
    path = Checkpointer(ckpt_dir).save(_state(), model, optimizer, {"tokenizer.json": tokenizer})

    assert (path / "tokenizer.json").read_text() == '{"vocab": 32}'
    assert "tokenizer.json" in read_checkpoint_meta(path)["files"]
    (path / "tokenizer.json").write_text('{"vocab": 33}')
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is corrupted"):
        read_checkpoint_meta(path)


@pytest.mark.parametrize("name", ["state.json", "model.safetensors", "../x.json", "a/b", ""])
def test_extra_file_names_cannot_clobber_or_escape(ckpt_dir, make_trained, tmp_path, name) -> None:
    model, optimizer = make_trained(steps=0)
    source = tmp_path / "x"
    source.write_text("x")
    with pytest.raises(CheckpointError, match="extra checkpoint file name"):
        Checkpointer(ckpt_dir).save(_state(), model, optimizer, {name: source})
    assert list(ckpt_dir.iterdir()) == []  # the temporary directory was removed


def test_saving_the_same_step_again_replaces_it(ckpt_dir, make_trained, train) -> None:
    model, optimizer = make_trained()
    checkpointer = Checkpointer(ckpt_dir)
    checkpointer.save(_state(5), model, optimizer)
    train(model, optimizer, 99)
    path = checkpointer.save(_state(5), model, optimizer)

    fresh, _ = make_trained(seed=1, steps=0)
    checkpointer.load(path, fresh)
    assert torch.equal(fresh.wte.weight, model.wte.weight)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_5"]


def test_unserialisable_state_fails_and_keeps_the_old_checkpoint(ckpt_dir, make_trained) -> None:
    model, optimizer = make_trained()
    checkpointer = Checkpointer(ckpt_dir)
    good = checkpointer.save(_state(1), model, optimizer)

    bad = TrainState(step=2, data_state={"sampler": object()})
    with pytest.raises(CheckpointError, match="cannot be stored as JSON"):
        checkpointer.save(bad, model, optimizer)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_1"]
    assert checkpointer.latest() == good


def test_directory_is_created_only_on_first_save(ckpt_dir, make_trained) -> None:
    checkpointer = Checkpointer(ckpt_dir)
    assert not ckpt_dir.exists()
    assert checkpointer.latest() is None
    checkpointer.save(_state(), *make_trained(steps=0))
    assert ckpt_dir.is_dir()


def test_numpy_scalars_in_state_are_stored_as_numbers(ckpt_dir, make_trained) -> None:
    np = pytest.importorskip("numpy")
    state = TrainState(step=1, data_state={"offset": np.int64(12)}, metrics={"loss": np.float32(2)})
    path = Checkpointer(ckpt_dir).save(state, *make_trained(steps=0))
    meta = read_checkpoint_meta(path)
    assert meta["data_state"] == {"offset": 12}
    assert meta["metrics"] == {"loss": 2.0}


def test_keep_last_must_be_positive(ckpt_dir) -> None:
    with pytest.raises(ConfigError, match="keep_last"):
        Checkpointer(ckpt_dir, keep_last=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip_is_bit_exact_and_loads_on_cpu(ckpt_dir, make_trained, train) -> None:
    model, optimizer = make_trained(seed=0, device="cuda")
    path = Checkpointer(ckpt_dir).save(_state(), model, optimizer)
    saved = {k: v.cpu().clone() for k, v in model.state_dict().items()}

    fresh, fresh_opt = make_trained(seed=1, steps=0, device="cuda")
    Checkpointer(ckpt_dir).load(path, fresh, fresh_opt)
    assert fresh.lm_head.weight is fresh.wte.weight
    assert fresh_opt.state[fresh.wte.weight]["exp_avg"].device.type == "cuda"
    train(model, optimizer, 7)
    train(fresh, fresh_opt, 7)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)

    on_cpu, _ = make_trained(seed=2, steps=0)  # e.g. evaluating a GPU run on a laptop
    Checkpointer(ckpt_dir).load(path, on_cpu)
    for name, tensor in on_cpu.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


class _SharedViews(torch.nn.Module):
    """A parameter and a buffer over different parts of one storage (not a tie)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.arange(6.0))
        self.register_buffer("tail", self.weight.data[3:])


def test_partially_shared_storage_is_stored_as_copies(ckpt_dir) -> None:
    path = Checkpointer(ckpt_dir).save(_state(), _SharedViews(), None)
    assert read_checkpoint_meta(path)["tensor_aliases"] == {}

    fresh = _SharedViews()
    with torch.no_grad():
        fresh.weight.zero_()
    Checkpointer(ckpt_dir).load(path, fresh)
    assert fresh.weight.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert fresh.tail.tolist() == [3.0, 4.0, 5.0]
