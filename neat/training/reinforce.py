"""REINFORCE with a KL penalty to the base: Transformer²'s objective for SVF experts.

Sun, Cetin & Tang 2025 (Transformer², eq. 1) train z by J = E[r(y) log p(y | x)] -
lambda KL(p || p_base) with r = +1 for a verified answer and -1 otherwise (the policy-gradient
estimator of Williams 1992). Each step: sample one answer per prompt from the current model,
score it by exact match, then take the gradient of the sampled answers' log-likelihood
weighted by their advantage (the reward less the batch mean, when `baseline`), plus the
exact KL over the vocabulary at each answer position to the base model (the same weights with
the adapters off, or a frozen copy for full fine-tuning).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from neat.config.finetune import ReinforceConfig
from neat.data.synthetic_math.prompts import IGNORE, is_exact_answer, newline_ids
from neat.evaluation import generate
from neat.interfaces import Batch, ITokenizer

__all__ = ["Reinforce"]

Logits = Callable[[torch.Tensor], torch.Tensor]


class Reinforce:
    """Implements IObjective on prompt batches (`ProblemBatches`).

    `policy` is the plain model the answers are sampled from (not a DDP or compiled wrapper:
    sampling needs no gradient); `reference` gives the base model's logits for the KL term.
    Sampling draws from the global RNG, which checkpoints save, so resume is exact; it runs
    under the trainer's autocast, as the step does.
    """

    def __init__(
        self,
        *,
        policy: nn.Module,
        reference: Logits,
        tokenizer: ITokenizer,
        cfg: ReinforceConfig,
        block_size: int,
        device: torch.device,
    ) -> None:
        self.policy = policy
        self.reference = reference
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.block_size = block_size
        self.device = device
        self.stop = newline_ids(tokenizer)
        self._sums: dict[str, float] = defaultdict(float)
        self._steps = 0

    # -- sampling ----------------------------------------------------------------------------------

    def _sample(self, prompts: list[list[int]], max_new: int) -> list[list[int]]:
        """One answer per prompt, cut after its first newline; prompts of equal length are
        sampled together (no padding, so no attention mask is needed)."""
        groups: dict[int, list[int]] = defaultdict(list)
        for i, prompt in enumerate(prompts):
            groups[len(prompt)].append(i)
        answers: list[list[int]] = [[] for _ in prompts]
        for length, rows in groups.items():
            ids = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=self.device)
            out = generate(
                self.policy,
                ids,
                max_new,
                block_size=self.block_size,
                temperature=self.cfg.temperature,
                cuda_graph=False,
            )
            for i, row in zip(rows, out[:, length:].tolist(), strict=True):
                end = next((k for k, t in enumerate(row) if t in self.stop), len(row) - 1)
                answers[i] = row[: end + 1]
        return answers

    # -- IObjective --------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if batch.prompt_lengths is None:
            raise TypeError("Reinforce needs prompt batches (ProblemBatches), got token windows")
        lengths = batch.prompt_lengths.tolist()
        prompts = [row[:n] for row, n in zip(batch.input_ids.tolist(), lengths, strict=True)]
        references = [
            self.tokenizer.decode([t for t in row if t != IGNORE]).partition("\n")[0]
            for row in batch.targets.tolist()
        ]
        max_new = self.cfg.max_new_tokens or batch.targets.shape[1] + 2
        answers = self._sample(prompts, max_new)
        right = [
            is_exact_answer(self.tokenizer, a, r) for a, r in zip(answers, references, strict=True)
        ]
        reward = torch.tensor([1.0 if ok else -1.0 for ok in right], device=self.device)
        advantage = reward - reward.mean() if self.cfg.baseline else reward

        # teacher-forced pass over prompt + sampled answer, scoring the answer's tokens only
        sequences = [p + a for p, a in zip(prompts, answers, strict=True)]
        width = max(len(s) for s in sequences) - 1
        x = torch.zeros(len(sequences), width, dtype=torch.long)
        y = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
        for i, (seq, n) in enumerate(zip(sequences, lengths, strict=True)):
            x[i, : len(seq) - 1] = torch.tensor(seq[:-1])
            y[i, n - 1 : len(seq) - 1] = torch.tensor(seq[n:])
        x, y = x[:, -self.block_size :].to(self.device), y[:, -self.block_size :].to(self.device)
        mask = y != IGNORE
        logits = model(x)["logits"]
        with torch.no_grad():
            base_logits = self.reference(x)
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_q = F.log_softmax(base_logits.float(), dim=-1)
        token_log_p = log_p.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1) * mask
        kl = ((log_p.exp() * (log_p - log_q)).sum(-1) * mask).sum() / mask.sum()
        policy_loss = -(advantage * token_log_p.sum(-1)).mean()
        self._record(sum(right) / len(right), float(kl.detach()), float(mask.sum()) / len(right))
        return policy_loss + self.cfg.kl_coef * kl

    def _record(self, accuracy: float, kl: float, answer_tokens: float) -> None:
        self._sums["reward_acc"] += accuracy
        self._sums["kl"] += kl
        self._sums["answer_tokens"] += answer_tokens
        self._steps += 1

    def metrics(self) -> dict[str, float]:
        """Means since the last call: the fraction of sampled answers that were right, the KL
        to the base (nats per answer token) and the answers' length in tokens."""
        if not self._steps:
            return {}
        means = {name: total / self._steps for name, total in self._sums.items()}
        self._sums.clear()
        self._steps = 0
        return means
