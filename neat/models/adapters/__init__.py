"""Few-parameter fine-tuning: adapters that wrap a trained model's linear layers.

`lora` adds a low-rank update (Hu et al. 2021); `svf` rescales each weight's singular values
(Transformer², Sun, Cetin & Tang 2025). Both leave the base weights frozen and untouched, so
an adapter at its identity setting gives the base model's outputs bit for bit.
"""

from neat.models.adapters.apply import apply_finetune
from neat.models.adapters.lora import LoRALinear, apply_lora, lora_parameters, merge_lora
from neat.models.adapters.svf import SVFLinear, apply_svf, svf_parameters

__all__ = [
    "LoRALinear",
    "SVFLinear",
    "apply_finetune",
    "apply_lora",
    "apply_svf",
    "lora_parameters",
    "merge_lora",
    "svf_parameters",
]
