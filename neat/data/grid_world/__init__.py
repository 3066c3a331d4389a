"""Grid-world spatial reasoning problems after MVoT's MAZE and FROZENLAKE tasks
(`type: grid_world`; Li et al. 2025, arXiv 2501.07542).

`spec` holds the config, `generate` draws the problems by simulation and is the data source,
`render` draws each state as an image and as tile codes (an exact tile codebook).
"""

from neat.data.grid_world.generate import (
    ACTIONS,
    GridProblem,
    Pos,
    Trajectory,
    distances_to,
    draw_world,
    eval_problem,
    is_held_out,
    next_action,
    problems,
    simulate,
    train_problem,
)
from neat.data.grid_world.render import (
    NUM_CODES,
    TILE_NAMES,
    codebook,
    decode_image,
    decode_tiles,
    render_problem,
    render_state,
    save_png,
    tile_codes,
    tiles_image,
)
from neat.data.grid_world.source import GridWorldSource
from neat.data.grid_world.spec import (
    QUESTION_KINDS,
    TASKS,
    GridWorldSourceConfig,
    GridWorldTestConfig,
)

__all__ = [
    "ACTIONS",
    "NUM_CODES",
    "QUESTION_KINDS",
    "TASKS",
    "TILE_NAMES",
    "GridProblem",
    "GridWorldSource",
    "GridWorldSourceConfig",
    "GridWorldTestConfig",
    "Pos",
    "Trajectory",
    "codebook",
    "decode_image",
    "decode_tiles",
    "distances_to",
    "draw_world",
    "eval_problem",
    "is_held_out",
    "next_action",
    "problems",
    "render_problem",
    "render_state",
    "save_png",
    "simulate",
    "tile_codes",
    "tiles_image",
    "train_problem",
]
