"""`finetune.objective: reinforce`: the objective learns from its reward, and a run on the
synthetic math tasks trains only its adapters, logs its reward and resumes exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch import nn

from neat.cli import cli
from neat.config.finetune import ReinforceConfig
from neat.data.tokenizers import CharTokenizer
from neat.interfaces import Batch
from neat.persistence import resolve_checkpoint
from neat.persistence.manifest import MODEL_FILE
from neat.training.reinforce import Reinforce

# -- the objective on a model whose every choice is one parameter ----------------------------------


class PositionTable(nn.Module):
    """Logits that depend only on the position: the policy REINFORCE has to shape."""

    def __init__(self, block_size: int, vocab_size: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(block_size, vocab_size))

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
        b, t = input_ids.shape
        return {"logits": self.table[:t].expand(b, t, -1)}


def prompt_batch(tokenizer: CharTokenizer, rows: int) -> Batch:
    prompt, answer = tokenizer.encode("\n3+4="), tokenizer.encode("7\n")
    return Batch(
        torch.tensor([prompt] * rows),
        torch.tensor([answer] * rows),
        torch.tensor([len(prompt)] * rows),
    )


def objective(policy: nn.Module, tokenizer: CharTokenizer, **cfg: Any) -> Reinforce:
    frozen = copy.deepcopy(policy).requires_grad_(False)
    return Reinforce(
        policy=policy,
        reference=lambda x: frozen(x)["logits"],
        tokenizer=tokenizer,
        cfg=ReinforceConfig(**cfg),
        block_size=16,
        device=torch.device("cpu"),
    )


def test_the_reward_rises_from_chance_to_almost_always() -> None:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.fit("0123456789+=\n")
    policy = PositionTable(16, tokenizer.vocab_size)
    reinforce = objective(policy, tokenizer, kl_coef=0.0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.2)
    batch = prompt_batch(tokenizer, 64)
    accuracy = []
    for _ in range(60):
        reinforce.loss(policy, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        accuracy.append(reinforce.metrics()["reward_acc"])
    chance = 1 / tokenizer.vocab_size**2
    assert accuracy[0] < 10 * chance
    assert sum(accuracy[-5:]) / 5 > 0.9


def test_the_kl_penalty_holds_the_policy_near_the_base() -> None:
    tokenizer = CharTokenizer.fit("0123456789+=\n")
    drift = {}
    for kl_coef in (0.0, 5.0):
        torch.manual_seed(0)
        policy = PositionTable(16, tokenizer.vocab_size)
        reinforce = objective(policy, tokenizer, kl_coef=kl_coef)
        optimizer = torch.optim.Adam(policy.parameters(), lr=0.2)
        for _ in range(30):
            reinforce.loss(policy, prompt_batch(tokenizer, 64)).backward()
            optimizer.step()
            optimizer.zero_grad()
        drift[kl_coef] = reinforce.metrics()["kl"]
    assert drift[5.0] < 0.5 * drift[0.0]


def test_kl_is_zero_while_the_policy_is_the_base() -> None:
    tokenizer = CharTokenizer.fit("0123456789+=\n")
    policy = PositionTable(16, tokenizer.vocab_size)
    with torch.no_grad():
        policy.table.normal_()
    reinforce = objective(policy, tokenizer, kl_coef=1.0)
    reinforce.loss(policy, prompt_batch(tokenizer, 8))
    assert reinforce.metrics()["kl"] == pytest.approx(0.0, abs=1e-6)


def test_token_windows_are_refused() -> None:
    tokenizer = CharTokenizer.fit("0123456789+=\n")
    policy = PositionTable(16, tokenizer.vocab_size)
    windows = Batch(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="prompt batches"):
        objective(policy, tokenizer).loss(policy, windows)


# -- through the CLI: a synthetic math base, then a reinforce run from it --------------------------

MATH = """\
name: math
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 32, bias: false}
data:
  type: synthetic_math
  seed: 0
  num_train: 500
  levels: [1]
  operations: [add]
  test: {levels: [2]}
  format: prompt_response
  tokenizer: {type: char}
optimization: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 2}
training: {max_steps: 20, batch_size: 16, seed: 1, device: cpu}
evaluation: {type: exact_match, interval: 100, num_problems: 8}
monitoring: {log_interval: 1}
checkpoint: {interval: 2}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def math_config(tmp_path: Path) -> Path:
    path = tmp_path / "math.yaml"
    path.write_text(MATH, encoding="utf-8")
    return path


@pytest.fixture
def math_base(math_config: Path, tmp_path: Path) -> Path:
    run = tmp_path / "base"
    code, _, err = invoke("train", "-c", str(math_config), "--run-dir", str(run))
    assert code == 0, err
    return run


def reinforce_args(config: Path, base: Path, run: Path, *more: str) -> list[str]:
    sets = [
        f"model.init_from={base}",
        "finetune.method=svf",
        "finetune.objective=reinforce",
        "training.max_steps=4",
        "optimization.lr=1e-2",
        *more,
    ]
    return ["train", "-c", str(config), "--run-dir", str(run)] + [
        arg for s in sets for arg in ("--set", s)
    ]


def train_rows(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [row for row in map(json.loads, lines) if row["event"] == "train"]


def test_a_reinforce_run_trains_z_alone_and_logs_its_reward(
    math_config: Path, math_base: Path, tmp_path: Path
) -> None:
    run = tmp_path / "rl"
    code, _, err = invoke(*reinforce_args(math_config, math_base, run))
    assert code == 0, err
    rows = train_rows(run)
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert all({"reward_acc", "kl", "answer_tokens"} <= row.keys() for row in rows)
    assert all(0.0 <= row["reward_acc"] <= 1.0 and row["kl"] >= 0.0 for row in rows)
    base = load_file(str(resolve_checkpoint(math_base) / MODEL_FILE))
    tuned = load_file(str(resolve_checkpoint(run) / MODEL_FILE))
    zs = {k: t for k, t in tuned.items() if k.endswith(".z")}
    assert zs
    moved = [k for k, z in zs.items() if not torch.equal(z, torch.ones_like(z))]
    assert moved, "no z-vector changed"
    for key, tensor in base.items():
        wrapped = key.replace(".weight", ".base.weight")
        assert torch.equal(tuned.get(key, tuned.get(wrapped)), tensor), key


def test_a_killed_reinforce_run_resumes_exactly(
    math_config: Path, math_base: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    code, _, err = invoke(*reinforce_args(math_config, math_base, whole))
    assert code == 0, err
    halves = tmp_path / "halves"
    code, _, err = invoke(*reinforce_args(math_config, math_base, halves, "training.max_steps=2"))
    assert code == 0, err
    args = reinforce_args(math_config, math_base, halves)
    code, _, err = invoke(*args, "--resume", "auto")
    assert code == 0, err
    for key in ("loss", "reward_acc", "kl"):
        assert [r[key] for r in train_rows(whole)] == [r[key] for r in train_rows(halves)], key
    a = load_file(str(resolve_checkpoint(whole) / MODEL_FILE))
    b = load_file(str(resolve_checkpoint(halves) / MODEL_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reinforce_on_text_data_is_a_config_error(tiny_config: Path, tmp_path: Path) -> None:
    code, _, err = invoke(
        "train", "-c", str(tiny_config), "--run-dir", str(tmp_path / "run"),
        "--set", f"model.init_from={tmp_path}", "--set", "finetune.objective=reinforce",
    )  # fmt: skip
    assert code != 0
    assert "finetune.objective: reinforce" in err and "synthetic_math" in err
    assert not (tmp_path / "run").exists()


def test_reinforce_from_scratch_is_a_config_error(math_config: Path, tmp_path: Path) -> None:
    code, _, err = invoke(
        "train", "-c", str(math_config), "--run-dir", str(tmp_path / "run"),
        "--set", "finetune.objective=reinforce",
    )  # fmt: skip
    assert code != 0
    assert "model.init_from" in err
