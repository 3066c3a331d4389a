"""Few-parameter fine-tuning: adapters that wrap a trained model's linear layers.

`lora` adds a low-rank update (Hu et al. 2021); `svf` rescales each weight's singular values
(Transformer², Sun, Cetin & Tang 2025). Both leave the base weights frozen and untouched, so
an adapter at its identity setting gives the base model's outputs bit for bit.
"""
