"""neat: a dependency-injected, config-driven training pipeline for language models."""

import os
import sys

if sys.platform == "darwin":  # read when torch registers its MPS kernels, i.e. at import
    # an operation MPS lacks then runs on the CPU with PyTorch's warning instead of failing
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from neat.config.registry import register_component  # after the variable

__version__ = "0.1.0"

__all__ = ["__version__", "register_component"]
