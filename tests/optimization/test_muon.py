"""`optimization.type: muon`: which parameters Muon steps, that it learns, and that its state
round-trips exactly, in memory and through a real `neat train` resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.models import GPT
from neat.models.gpt import GPTConfig
from neat.optimization.muon import MuonAdamW, MuonConfig, MuonFactory

CPU = torch.device("cpu")


def tiny_gpt(tie: bool = True, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, tie_embeddings=tie)
    return GPT(cfg, vocab_size=11)


def make_optimizer(model: GPT, **changes: object) -> torch.optim.Optimizer:
    cfg = MuonConfig.model_validate({"warmup_steps": 0, "decay_steps": 10, **changes})
    return MuonFactory(cfg, max_steps=10).create(model, CPU)


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 11, (4, 9), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def step(model: GPT, opt: torch.optim.Optimizer) -> float:
    x, y = fixed_batch()
    loss = model(x, y)["loss"]
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


@pytest.mark.parametrize("tie", [True, False])
def test_the_blocks_matrices_are_muon_and_the_rest_adamw(tie: bool) -> None:
    model = tiny_gpt(tie)
    opt = make_optimizer(model)
    names = {id(p): n for n, p in model.named_parameters()}
    by_algorithm: dict[str, list[str]] = {"muon": [], "adamw": []}
    for group in opt.param_groups:
        by_algorithm[group["algorithm"]] += [names[id(p)] for p in group["params"]]
    muon, adamw = set(by_algorithm["muon"]), set(by_algorithm["adamw"])
    every = dict(model.named_parameters())  # tied weights once, under their first name
    assert not muon & adamw and muon | adamw == set(every)
    assert sum(len(v) for v in by_algorithm.values()) == len(every)  # none twice
    hidden = {n for n, p in every.items() if n.startswith("blocks.") and p.dim() == 2}
    assert muon == hidden and hidden
    assert "wte.weight" in adamw and ("lm_head.weight" in adamw) is not tie
    assert all(
        every[n].dim() == 1 for n in adamw - {"wte.weight", "lm_head.weight", "pos.wpe.weight"}
    )


def test_adamw_groups_get_adamw_lr_through_lr_scale() -> None:
    opt = make_optimizer(tiny_gpt(), lr=0.02, adamw_lr=1e-3, adamw_weight_decay=0.05)
    muon, decay, no_decay = opt.param_groups
    assert muon["lr"] == pytest.approx(0.02) and muon["lr_scale"] == 1.0
    assert decay["lr_scale"] == pytest.approx(0.05) and decay["lr"] == pytest.approx(1e-3)
    assert no_decay["lr"] == pytest.approx(1e-3)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)


@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(adjust_lr_fn: str) -> None:
    model = tiny_gpt()
    lr = 0.02 if adjust_lr_fn == "original" else 1e-2
    opt = make_optimizer(model, lr=lr, adamw_lr=3e-3, adjust_lr_fn=adjust_lr_fn)
    losses = [step(model, opt) for _ in range(8)]
    assert losses[-1] < losses[0] - 0.2, losses


def test_state_dict_round_trip_reproduces_the_next_step_exactly() -> None:
    model = tiny_gpt(tie=False)
    opt = make_optimizer(model)
    for _ in range(3):
        step(model, opt)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())  # state_dict() holds the live tensors
    assert all(isinstance(pid, int) for pid in saved_opt["state"])
    kinds = {frozenset(s) for s in saved_opt["state"].values()}
    assert kinds == {frozenset({"momentum_buffer"}), frozenset({"step", "exp_avg", "exp_avg_sq"})}
    step(model, opt)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = tiny_gpt(tie=False, seed=5)
    fresh.load_state_dict(saved_model)
    fresh_opt = make_optimizer(fresh)
    fresh_opt.load_state_dict(saved_opt)
    assert isinstance(fresh_opt, MuonAdamW)
    step(fresh, fresh_opt)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_muon_refuses_a_parameter_that_is_not_a_matrix() -> None:
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW(
            [{"params": [torch.nn.Parameter(torch.zeros(3))], "algorithm": "muon"}],
            lr=0.02,
            adamw_scale=0.015,
        )


def test_the_section_validates_as_muon() -> None:
    cfg = load_config(raw={"data": {"path": "x"}, "optimization": {"type": "muon"}})
    assert isinstance(cfg.optimization, MuonConfig)
    assert (cfg.optimization.lr, cfg.optimization.adamw_lr) == (0.02, 3e-4)


# -- a real run ------------------------------------------------------------------------------------

MUON = "optimization={type: muon, lr: 0.02, adamw_lr: 3.0e-3, warmup_steps: 2, decay_steps: 20}"


def _train(config: Path, run: Path, *extra: str) -> None:
    args = ["train", "-c", str(config), "--run-dir", str(run), "--set", MUON, *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["event"] == "train"}


def test_a_muon_run_resumes_exactly(tiny_config: Path, tmp_path: Path) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    steps = ["--set", "training.max_steps=10", "--set", "checkpoint.interval=5"]
    _train(tiny_config, whole, *steps)
    _train(tiny_config, parts, "--set", "training.max_steps=5")
    _train(tiny_config, parts, "--resume", "auto", *steps)
    assert _losses(parts) == _losses(whole) and len(_losses(whole)) == 10

    skeleton = json.loads((whole / "checkpoints" / "step_10" / "optimizer.json").read_text())
    groups = skeleton["param_groups"]
    assert [g["algorithm"] for g in groups] == ["muon", "adamw", "adamw"]
    muon_lr = groups[0]["lr"]
    assert muon_lr > 0
    for group in groups[1:]:  # the schedule's lr, scaled by adamw_lr / lr
        assert group["lr"] == pytest.approx(muon_lr * 3e-3 / 0.02)


def test_muon_with_fsdp_is_one_clear_error() -> None:
    from neat.config import load_config
    from neat.errors import ConfigError

    raw = {"data": {"path": "x"}, "optimization": {"type": "muon"},
           "training": {"distributed": "fsdp"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"use training\.distributed: ddp"):
        load_config(raw=raw)
