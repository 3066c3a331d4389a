"""MVoT's interleaved reasoning: after each verbal step, the image of the state it reached.

Li et al. 2025 (arXiv 2501.07542, §3.1) generate z_1, v_1, z_2, v_2, ...: a text step, then a
visualization of the state. Here each image is the state's codes (the exact tile codes, or a
trained VQ tokenizer's: codec.py) written as an image segment of the `image_text` tokenizer, so
the document stays one string and the model's vocabulary holds the image codes beside the bytes.
"""

from __future__ import annotations

from neat.data.grid_world.codec import StateCodec, TileCodec
from neat.data.grid_world.generate import GridProblem
from neat.data.image_text import image_segment, split_images

__all__ = ["interleaved_response", "response_images"]


def interleaved_response(problem: GridProblem, codec: StateCodec | None = None) -> str:
    """The chain of thought with the image of the state after each executed move."""
    codec = codec or TileCodec()
    steps = problem.chain_of_thought.splitlines(keepends=True)
    parts = []
    for i, line in enumerate(steps):
        parts.append(line)
        if i < len(problem.states):  # step lines come first, one per executed move
            parts.append(image_segment(codec.encode(problem.grid, problem.states[i])) + "\n")
    return "".join(parts) + f"answer: {problem.answer}\n"


def response_images(text: str) -> list[list[int]]:
    """The images (codes) of a written or generated response, in order."""
    return [part for part in split_images(text) if isinstance(part, list)]
