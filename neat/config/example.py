"""The commented config that `neat init` writes."""

from __future__ import annotations

from pathlib import Path

from neat.errors import ConfigError

EXAMPLE_CONFIG = """\
# A neat experiment. Every key is optional except data.path; `neat config show -c THIS`
# prints the full resolved config with all defaults. Relative paths resolve against this file.
name: my-experiment
version: 1

model:
  type: gpt            # GPT-2 layout: learned positions, pre-LayerNorm, GELU MLP, tied embeddings
  n_layer: 4
  n_head: 4
  n_embd: 128          # width; must be divisible by n_head
  block_size: 64       # context length in tokens
  dropout: 0.0

data:
  type: text
  path: corpus.txt     # a file, a directory (read recursively) or a glob like "texts/**/*.txt"
  tokenizer:
    type: char         # char: one token per character of the corpus; byte: 256 bytes + end-of-text
  val_fraction: 0.1    # the last 10% of tokens are the validation split

optimization:
  type: adamw
  lr: 1.0e-3           # write floats with a dot: YAML reads 1e-3 as a string
  min_lr: 1.0e-4
  warmup_steps: 100
  schedule: cosine     # cosine | linear | constant
  weight_decay: 0.1
  grad_clip: 1.0       # 0 disables clipping

training:
  max_steps: 2000
  batch_size: 12
  grad_accum_steps: 1
  seed: 1337           # fixes init, data order and dropout
  device: auto         # auto picks CUDA, then Apple MPS, then CPU
  precision: auto      # auto = bf16 where supported, else fp32; also fp32 | bf16 | fp16
  compile: false       # torch.compile the model

evaluation:
  interval: 250        # steps between validation runs
  batches: 20          # validation batches (the same ones every time)

monitoring:
  log_interval: 50
  monitors: [console, structlog, metrics]

checkpoint:
  interval: 500
  keep_last: 2
"""


def write_example_config(directory: Path, *, force: bool = False) -> Path:
    path = directory / "neat.yaml"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    return path
