"""Group relative policy optimisation (Shao et al. 2024, DeepSeekMath, section 4.1).

Each step: for every prompt of the batch the policy samples `group_size` completions (KV-cache
generation, stopping at a newline or end of text); the rewards score them; a completion's
advantage is its reward less the group's mean, over the group's standard deviation, so no
value network is needed; the loss is the PPO clipped-ratio objective (Schulman et al. 2017)
on every completion token, plus beta times the KL to the frozen reference by the k3 estimator
(Schulman 2020, "Approximating KL divergence"), which is unbiased and never negative.

One gradient step is taken per batch of completions, so the old policy is the current one
(its log-probabilities detached): the ratio is 1 and its gradient is that of the log-prob,
as in GRPO with one inner iteration; the clip binds only when completions are reused.
Sampling draws from the global RNG, which checkpoints save, so resume is exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neat.config.rl import RLConfig
from neat.data.rl_problems import RLProblem
from neat.data.synthetic_math.prompts import IGNORE, newline_ids
from neat.evaluation.generation import iter_tokens
from neat.interfaces import Batch, ITokenizer
from neat.training.rewards import Reward

__all__ = [
    "GRPO",
    "clipped_token_loss",
    "group_advantages",
    "kl_k3",
    "reduce_tokens",
]

Logits = Callable[[torch.Tensor], torch.Tensor]
ADVANTAGE_EPS = 1e-4  # a group whose rewards are all equal gets advantage 0, not 0 / 0


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(r - mean of the group) / (std of the group + eps), rows grouped in consecutive runs
    of `group_size` (GRPO's outcome supervision)."""
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True, unbiased=False)
    return ((grouped - mean) / (std + ADVANTAGE_EPS)).view(-1)


def clipped_token_loss(
    log_p: torch.Tensor, old_log_p: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(rho A, clip(rho, 1 - eps, 1 + eps) A) per token (B, T), and where the clipped
    side was the smaller one (the tokens whose gradient the clip removed)."""
    ratio = torch.exp(log_p - old_log_p)
    a = advantages[:, None]
    unclipped = ratio * a
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * a
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def kl_k3(log_p: torch.Tensor, ref_log_p: torch.Tensor) -> torch.Tensor:
    """KL(pi || ref) per token: ref/pi - log(ref/pi) - 1 on the sampled token."""
    log_ratio = ref_log_p - log_p
    return torch.exp(log_ratio) - log_ratio - 1.0


def reduce_tokens(values: torch.Tensor, mask: torch.Tensor, length_norm: str) -> torch.Tensor:
    """Mean over every masked token (`token`), or per row then over rows (`sequence`)."""
    mask = mask.to(values.dtype)
    if length_norm == "token":
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    per_row = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_row.mean()


class GRPO:
    """Implements IObjective on prompt batches (`ProblemBatches`, which carry the problems).

    `policy` is the plain model completions are sampled from (not a DDP or compiled
    wrapper); `reference` gives the reference's logits for the KL term (None: no penalty).
    """

    def __init__(
        self,
        *,
        policy: nn.Module,
        reference: Logits | None,
        tokenizer: ITokenizer,
        rewards: Sequence[Reward],
        cfg: RLConfig,
        block_size: int,
        device: torch.device,
    ) -> None:
        self.policy = policy
        self.reference = reference
        self.tokenizer = tokenizer
        self.rewards = list(rewards)
        self.cfg = cfg
        self.block_size = block_size
        self.device = device
        self.stop = set(newline_ids(tokenizer))
        if tokenizer.eot_id is not None:
            self.stop.add(tokenizer.eot_id)
        self._sums: dict[str, float] = defaultdict(float)
        self._steps = 0

    # -- sampling ----------------------------------------------------------------------------------

    def sample(self, prompts: list[list[int]]) -> list[list[int]]:
        """`group_size` completions per prompt, in prompt order (the group's rows together),
        each cut after its first stop token. Rows with prompts of one length are sampled in
        one batch (no padding, so no attention mask is needed) until all have stopped."""
        g = self.cfg.group_size
        rows = [i for i in range(len(prompts)) for _ in range(g)]
        by_length: dict[int, list[int]] = defaultdict(list)
        for row, prompt in enumerate(rows):
            by_length[len(prompts[prompt])].append(row)
        out: list[list[int]] = [[] for _ in rows]
        for members in by_length.values():
            ids = torch.tensor([prompts[rows[r]] for r in members], device=self.device)
            done = torch.zeros(len(members), dtype=torch.bool, device=self.device)
            columns = []
            stop = torch.tensor(sorted(self.stop), device=self.device)
            with torch.no_grad():
                for token in iter_tokens(
                    self.policy,
                    ids,
                    self.cfg.max_new_tokens,
                    block_size=self.block_size,
                    temperature=self.cfg.temperature,
                    top_k=self.cfg.top_k,
                    cuda_graph=False,
                ):
                    columns.append(token)
                    done |= torch.isin(token[:, 0], stop)
                    if bool(done.all()):
                        break
            sampled = torch.cat(columns, dim=1).tolist()
            for r, tokens in zip(members, sampled, strict=True):
                end = next((k for k, t in enumerate(tokens) if t in self.stop), len(tokens) - 1)
                out[r] = tokens[: end + 1]
        return out

    def score(self, problems: Sequence[RLProblem], texts: Sequence[str]) -> torch.Tensor:
        """The weighted total reward of each completion (row i answers problem i // G); each
        reward's mean is recorded."""
        g = self.cfg.group_size
        total = torch.zeros(len(texts))
        for reward in self.rewards:
            values = torch.tensor([reward(problems[i // g], t) for i, t in enumerate(texts)])
            total += reward.weight * values
            self._sums[f"reward_{reward.name}"] += float(values.mean())
            if reward.name == "format":
                self._sums["format_rate"] += float((values == 1.0).float().mean())
        return total

    # -- IObjective --------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if batch.prompt_lengths is None or batch.problems is None:
            raise TypeError("GRPO needs prompt batches with problems (ProblemBatches)")
        g = self.cfg.group_size
        lengths = batch.prompt_lengths.tolist()
        prompts = [row[:n] for row, n in zip(batch.input_ids.tolist(), lengths, strict=True)]
        completions = self.sample(prompts)
        texts = [self._decode(c) for c in completions]
        rewards = self.score(batch.problems, texts)
        advantages = group_advantages(rewards, g).to(self.device)

        x, y = self._teacher_forced([prompts[i // g] for i in range(len(texts))], completions)
        mask = y != IGNORE
        log_p = _token_log_probs(model(x)["logits"], y)
        per_token, clipped = clipped_token_loss(log_p, log_p.detach(), advantages, self.cfg.clip)
        kl = torch.zeros_like(log_p)
        if self.reference is not None:
            with torch.no_grad():
                ref_log_p = _token_log_probs(self.reference(x), y)
            kl = kl_k3(log_p, ref_log_p)
            per_token = per_token + self.cfg.kl_coef * kl
        loss = reduce_tokens(per_token, mask, self.cfg.length_norm)

        grouped = rewards.view(-1, g)
        self._sums["reward_mean"] += float(rewards.mean())
        self._sums["reward_std"] += float(grouped.std(dim=1, unbiased=False).mean())
        self._sums["kl"] += float(reduce_tokens(kl.detach(), mask, "token"))
        self._sums["clip_frac"] += float(reduce_tokens(clipped.float(), mask, "token"))
        self._sums["completion_len"] += float(mask.sum()) / len(texts)
        self._steps += 1
        return loss

    def _decode(self, tokens: list[int]) -> str:
        try:
            return self.tokenizer.decode(tokens)
        except (ValueError, KeyError, IndexError):
            return ""  # ids the tokenizer cannot decode score as an empty answer

    def _teacher_forced(
        self, prompts: list[list[int]], completions: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of prompt + completion, the targets only on the completion;
        each row right-padded and cut to its last `block_size` tokens."""
        sequences = [p + c for p, c in zip(prompts, completions, strict=True)]
        width = min(max(len(s) for s in sequences) - 1, self.block_size)
        x = torch.zeros(len(sequences), width, dtype=torch.long)
        y = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
        for i, (seq, prompt) in enumerate(zip(sequences, prompts, strict=True)):
            inputs = seq[:-1][-width:]
            labels = ([IGNORE] * (len(prompt) - 1) + seq[len(prompt) :])[-width:]
            x[i, : len(inputs)] = torch.tensor(inputs)
            y[i, : len(labels)] = torch.tensor(labels)
        return x.to(self.device), y.to(self.device)

    def metrics(self) -> dict[str, float]:
        """Means since the last call: the total reward and its spread within groups, each
        reward, the format rate, the KL to the reference (nats per token), the fraction of
        tokens the clip bound and the completions' length in tokens."""
        if not self._steps:
            return {}
        means = {name: total / self._steps for name, total in self._sums.items()}
        self._sums.clear()
        self._steps = 0
        return means


def _token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p of each target token (0 where the target is IGNORE), in fp32."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return log_p.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * (targets != IGNORE)
