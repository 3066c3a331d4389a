"""GRPO: advantages within groups, the clipped objective by hand, a zero KL at the start, the
reward rising on a toy task, and a real `training.objective: grpo` run that resumes exactly
and takes a user-registered reward."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from neat.cli import cli
from neat.config import load_config, register_component
from neat.config.rl import RewardConfig, RLConfig
from neat.data.rl_problems import RLProblem
from neat.data.synthetic_math import SyntheticMathSourceConfig
from neat.data.tokenizers import CharTokenizer
from neat.errors import ConfigError
from neat.interfaces import Batch
from neat.training.grpo import GRPO, clipped_token_loss, group_advantages, kl_k3, reduce_tokens
from neat.training.rewards import Reward, exact_match
from tests.training.test_reinforce import PositionTable

# -- the pieces, by hand ---------------------------------------------------------------------------


def test_advantages_are_zero_mean_and_unit_spread_within_each_group() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.2, 0.4, 0.6, 0.8])
    a = group_advantages(rewards, 4).view(2, 4)
    torch.testing.assert_close(a.mean(dim=1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(a.std(dim=1, unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    assert torch.equal(group_advantages(torch.full((4,), 0.7), 4), torch.zeros(4))


def test_the_clipped_objective_matches_a_hand_computation() -> None:
    log_p = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios to an old policy of 1
    old = torch.zeros(1, 3)
    for advantage, expected, binds in (
        (2.0, [-1.2 * 2.0, -0.5 * 2.0, -1.1 * 2.0], [True, False, False]),
        (-1.0, [1.5, 0.8, 1.1], [False, True, False]),
    ):
        loss, clipped = clipped_token_loss(log_p, old, torch.tensor([advantage]), clip=0.2)
        torch.testing.assert_close(loss, torch.tensor([expected]))
        assert clipped.tolist() == [binds]


def test_k3_is_zero_for_equal_policies_and_positive_otherwise() -> None:
    log_p = torch.log(torch.tensor([0.2, 0.5, 0.9]))
    assert torch.equal(kl_k3(log_p, log_p), torch.zeros(3))
    ref = torch.log(torch.tensor([0.4, 0.5, 0.3]))
    expected = [0.4 / 0.2 - math.log(2.0) - 1, 0.0, 0.3 / 0.9 - math.log(0.3 / 0.9) - 1]
    torch.testing.assert_close(kl_k3(log_p, ref), torch.tensor(expected))


def test_token_and_sequence_normalisation_weigh_lengths_differently() -> None:
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    assert float(reduce_tokens(values, mask, "token")) == pytest.approx(7 / 5)
    assert float(reduce_tokens(values, mask, "sequence")) == pytest.approx((1 + 3) / 2)


# -- the objective on a model whose every choice is one parameter ----------------------------------

TOKENIZER = CharTokenizer.fit("0123456789+=\n")
MATH = SyntheticMathSourceConfig(type="synthetic_math", num_train=10, levels=[1])


def prompt_batch(rows: int) -> Batch:
    prompt, answer = TOKENIZER.encode("\n3+4="), TOKENIZER.encode("7\n")
    problem = RLProblem("3+4=", "7\n", None, MATH)
    return Batch(
        torch.tensor([prompt] * rows),
        torch.tensor([answer] * rows),
        torch.tensor([len(prompt)] * rows),
        problems=(problem,) * rows,
    )


def grpo(policy: nn.Module, rewards: list[Reward] | None = None, **cfg: Any) -> GRPO:
    frozen = copy.deepcopy(policy).requires_grad_(False)
    settings = RLConfig(**{"max_new_tokens": 3, **cfg})
    return GRPO(
        policy=policy,
        reference=(lambda x: frozen(x)["logits"]) if settings.reference != "none" else None,
        tokenizer=TOKENIZER,
        rewards=rewards or [Reward("exact_match", 1.0, exact_match)],
        cfg=settings,
        block_size=16,
        device=torch.device("cpu"),
    )


def test_equal_rewards_give_no_policy_gradient_and_the_first_kl_is_zero() -> None:
    torch.manual_seed(0)
    policy = PositionTable(16, TOKENIZER.vocab_size)
    with torch.no_grad():
        policy.table.normal_()
    constant = Reward("constant", 1.0, lambda problem, text: 0.5)
    objective = grpo(policy, [constant], group_size=4, kl_coef=0.1)
    objective.loss(policy, prompt_batch(2)).backward()
    assert policy.table.grad is not None and torch.count_nonzero(policy.table.grad) == 0
    metrics = objective.metrics()
    assert metrics["kl"] == 0.0 and metrics["reward_std"] == 0.0
    assert metrics["clip_frac"] == 0.0 and 1 <= metrics["completion_len"] <= 3


def test_the_mean_reward_rises_from_chance_on_a_toy_task() -> None:
    torch.manual_seed(0)
    policy = PositionTable(16, TOKENIZER.vocab_size)
    objective = grpo(policy, group_size=8, reference="none", kl_coef=0.0, temperature=1.0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.2)
    rewards = []
    for _ in range(80):
        objective.loss(policy, prompt_batch(8)).backward()
        optimizer.step()
        optimizer.zero_grad()
        rewards.append(objective.metrics()["reward_mean"])
    assert sum(rewards[:5]) / 5 < 0.05  # chance: 1 in 13 x 13
    assert sum(rewards[-5:]) / 5 > 0.8


# -- a real run ------------------------------------------------------------------------------


class ShortRewardConfig(RewardConfig):
    """A user's reward: shorter completions are better."""

    type: Literal["short"] = "short"


@pytest.fixture
def short_reward() -> None:
    register_component(
        "reward",
        ShortRewardConfig,
        lambda cfg, ctx: Reward("short", cfg.weight, lambda problem, text: 1.0 / len(text or "?")),
    )


GRPO_CONFIG = """\
name: grpo-tiny
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 16, dropout: 0.0}
data:
  type: synthetic_math
  num_train: 200
  levels: [1]
  operations: [add]
  tokenizer: {type: char}
optimization: {lr: 3.0e-3, warmup_steps: 0, decay_steps: 8}
training: {objective: grpo, max_steps: 8, batch_size: 4, seed: 3, device: cpu}
rl:
  group_size: 4
  max_new_tokens: 4
  reference: none
  kl_coef: 0.0
  rewards: [{type: exact_match}, {type: short, weight: 0.5}]
evaluation: {type: exact_match, interval: 4, num_problems: 8}
monitoring: {log_interval: 1}
checkpoint: {interval: 4}
"""


def _train(config: Path, run: Path, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run), *extra])
    assert result.exit_code == 0, result.output


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["event"] == "train"}


def test_a_grpo_run_logs_its_rewards_and_resumes_exactly(
    short_reward: None, tmp_path: Path
) -> None:
    config = tmp_path / "grpo.yaml"
    config.write_text(GRPO_CONFIG, encoding="utf-8")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _train(config, whole)
    _train(config, parts, "--set", "training.max_steps=4")
    _train(config, parts, "--resume", "auto")
    assert _losses(parts) == _losses(whole) and len(_losses(whole)) == 8
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["event"] == "train"]
    for key in ("reward_mean", "reward_std", "reward_exact_match", "reward_short", "kl"):
        assert all(key in r for r in train), key
    assert all(0 < r["reward_short"] <= 1 for r in train)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"type": "text", "path": "x"}}, "use one source of type synthetic_math"),
        ({"rl": {"reference": "none"}}, "rl.kl_coef is 0.04 and rl.reference is none"),
        ({"rl": {"reference": "init_from", "kl_coef": 0.1}}, "model.init_from is not set"),
        (
            {"rl": {"reference": "none", "kl_coef": 0, "rewards": [{"type": "format"}]}},
            "rl.rewards.0: reward 'format' scores double_integrator answers",
        ),
        (
            {"rl": {"reference": "none", "kl_coef": 0, "rewards": [{"type": "nope"}]}},
            "unknown reward type 'nope'",
        ),
        ({"rl": {"reference": "none", "kl_coef": 0, "group_size": 1}}, "rl.group_size"),
    ],
)
def test_a_wrong_rl_config_is_one_clear_error(change: dict[str, Any], message: str) -> None:
    raw: dict[str, Any] = {
        "data": {"type": "synthetic_math", "levels": [1]},
        "training": {"objective": "grpo"},
        **change,
    }
    with pytest.raises(ConfigError, match=message):
        load_config(raw=raw)
