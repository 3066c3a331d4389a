"""The sample `evaluation.sample` asks for at each evaluation: one continuation of a fixed
prompt from a fixed seed, drawn with its own generator so the run's random stream (and with
it exact resume) is untouched."""

from __future__ import annotations

import torch
from torch import nn

from neat.config.base import SampleConfig
from neat.errors import ConfigError, NeatError
from neat.evaluation.generation import generate
from neat.interfaces import ITokenizer

__all__ = ["EvalSampler"]


class EvalSampler:
    def __init__(
        self, cfg: SampleConfig, tokenizer: ITokenizer, block_size: int, device: torch.device
    ) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.device = device
        try:
            ids = tokenizer.encode(cfg.prompt) if cfg.prompt else []
        except (NeatError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"evaluation.sample.prompt {cfg.prompt!r} cannot be encoded by the run's "
                f"tokenizer ({exc}): use characters of the training text"
            ) from exc
        if not ids:  # an empty prompt starts from end of text (or id 0)
            ids = [tokenizer.eot_id if tokenizer.eot_id is not None else 0]
        self.prompt_ids = ids

    def __call__(self, model: nn.Module) -> str:
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out = generate(
                model,
                ids,
                self.cfg.max_new_tokens,
                block_size=self.block_size,
                temperature=self.cfg.temperature,
                top_k=self.cfg.top_k,
                generator=generator,
                cuda_graph=False,
            )
        try:
            return self.tokenizer.decode(out[0].tolist())
        except (ValueError, KeyError, IndexError):  # ids a byte tokenizer cannot decode yet
            return self.tokenizer.decode(out[0, : len(self.prompt_ids)].tolist())
