"""The grid-world source (MVoT's MAZE and FROZENLAKE tasks, arXiv 2501.07542): deterministic per
seed, splits that never overlap, and answers checked against a simulation written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from neat.cli import cli
from neat.config import load_config
from neat.data.grid_world import (
    NUM_CODES,
    GridProblem,
    GridWorldSource,
    GridWorldSourceConfig,
    codebook,
    decode_image,
    decode_tiles,
    problems,
    render_problem,
    render_state,
    save_png,
    tile_codes,
)
from neat.errors import ConfigError

DELTAS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
ORDER = ["up", "down", "left", "right"]


def config(task: str = "frozenlake", **overrides: object) -> GridWorldSourceConfig:
    return GridWorldSourceConfig.model_validate({"task": task, "num_train": 50, **overrides})


def every_split(cfg: GridWorldSourceConfig, n: int = 60) -> list[GridProblem]:
    return problems(cfg, "train", n) + problems(cfg, "test", n)


def by_hand(problem: GridProblem) -> tuple[list[tuple[int, int]], bool, bool]:
    """Walk the moves cell by cell: (cells visited, any move blocked, fell into a hole)."""
    grid, side = problem.grid, problem.side
    row, col = problem.start
    visited, bumped = [], False
    for move in problem.actions:
        r, c = row + DELTAS[move][0], col + DELTAS[move][1]
        if r < 0 or c < 0 or r >= side or c >= side or grid[r][c] == "#":
            bumped = True
        else:
            row, col = r, c
        visited.append((row, col))
        if grid[row][col] == "H":
            return visited, bumped, True
    return visited, bumped, False


def goal_distances(problem: GridProblem) -> dict[tuple[int, int], int]:
    """Moves to the goal over floor cells, by relaxing until nothing changes (not a BFS)."""
    side, grid = problem.side, problem.grid
    open_cells = [(r, c) for r in range(side) for c in range(side) if grid[r][c] in ".G"]
    dist = {problem.goal: 0}
    changed = True
    while changed:
        changed = False
        for r, c in open_cells:
            near = [
                dist[(r + dr, c + dc)] for dr, dc in DELTAS.values() if (r + dr, c + dc) in dist
            ]
            if near and min(near) + 1 < dist.get((r, c), side * side + 1):
                dist[(r, c)] = min(near) + 1
                changed = True
    return dist


def test_the_same_config_gives_the_same_problems_and_another_seed_others() -> None:
    for task in ("maze", "frozenlake"):
        first, again = every_split(config(task, seed=3)), every_split(config(task, seed=3))
        assert first == again
        other = every_split(config(task, seed=4))
        assert sum(a.key == b.key for a, b in zip(first, other, strict=True)) < len(first) // 10
        docs = list(GridWorldSource(config(task, seed=3)).documents())
        assert [d.text for d in docs] == [
            d.text for d in GridWorldSource(config(task, seed=3)).documents()
        ]


def test_train_heldout_and_ood_never_overlap() -> None:
    for task in ("maze", "frozenlake"):
        cfg = config(task, num_train=400, holdout_fraction=0.2)
        train = {p.key for p in problems(cfg, "train", 400)}
        heldout = problems(cfg, "test_heldout", 100)
        ood = problems(cfg, "test_ood", 100)
        assert train.isdisjoint(p.key for p in heldout)
        assert train.isdisjoint(p.key for p in ood)
        assert {p.key for p in heldout}.isdisjoint(p.key for p in ood)
        assert all(4 <= p.side <= 6 for p in heldout) and all(7 <= p.side <= 8 for p in ood)
        assert {p.split for p in ood} == {"ood"} and {p.split for p in heldout} == {"heldout"}


def test_every_answer_matches_a_simulation_by_hand() -> None:
    for task in ("maze", "frozenlake"):
        for problem in every_split(config(task)):
            visited, bumped, fell = by_hand(problem)
            assert list(problem.states) == visited and problem.fell == fell
            final = visited[-1]
            if problem.kind == "final_position":
                assert problem.answer == f"({final[0]},{final[1]})"
            elif problem.kind == "falls":
                assert problem.answer == (
                    "yes" if (fell if task == "frozenlake" else bumped) else "no"
                )
            else:
                assert not fell and final != problem.goal
            assert problem.response.endswith(f"answer: {problem.answer}\n")
            assert problem.response.count("step ") == len(visited)


def test_falls_answers_are_balanced() -> None:
    for task in ("maze", "frozenlake"):
        answers = [p.answer for p in problems(config(task, questions=["falls"]), "train", 100)]
        assert 40 <= answers.count("yes") <= 60


def test_worlds_are_solvable_and_obstacles_avoid_start_and_goal() -> None:
    for task, obstacle, other in (("maze", "#", "H"), ("frozenlake", "H", "#")):
        for problem in every_split(config(task, obstacle_fraction=0.5)):
            grid, (sr, sc), (gr, gc) = problem.grid, problem.start, problem.goal
            assert grid[sr][sc] == "." and grid[gr][gc] == "G" and problem.start != problem.goal
            assert "".join(grid).count("G") == 1 and other not in "".join(grid)
            assert problem.start in goal_distances(problem)  # the goal can be reached
            assert len(grid) == problem.side and all(len(row) == problem.side for row in grid)
            assert obstacle in "".join(grid) or problem.side <= 8


def test_next_action_starts_a_shortest_path() -> None:
    for task in ("maze", "frozenlake"):
        cfg = config(task, questions=["next_action"])
        for problem in every_split(cfg):
            dist = goal_distances(problem)
            r, c = problem.states[-1]
            after = {move: (r + DELTAS[move][0], c + DELTAS[move][1]) for move in ORDER}
            nearer = [move for move in ORDER if dist.get(after[move], -9) == dist[(r, c)] - 1]
            assert problem.answer == nearer[0]  # the first shortest move in the fixed order
            assert f"is {dist[(r, c)]} moves away" in problem.chain_of_thought


def test_render_has_one_distinct_colour_per_tile_type() -> None:
    grid = ("..#", "H.G", "...")
    image = render_state(grid, (0, 0), cell=8)
    assert image.shape == (24, 24, 3) and image.dtype == np.uint8
    cells = {"agent": (0, 0), "floor": (0, 1), "wall": (0, 2), "hole": (1, 0), "goal": (1, 2)}
    centre = {name: tuple(image[r * 8 + 4, c * 8 + 4]) for name, (r, c) in cells.items()}
    assert len(set(centre.values())) == 5
    assert tuple(image[0, 0]) == centre["floor"]  # the agent is drawn over its tile
    book = codebook(8).reshape(NUM_CODES, -1).astype(int)
    assert all((book[i] != book[j]).any() for i in range(NUM_CODES) for j in range(i))


def test_tile_codes_and_images_round_trip() -> None:
    for problem in every_split(config("frozenlake"), 20) + every_split(config("maze"), 20):
        for pos, image in zip(problem.positions, render_problem(problem, cell=6), strict=True):
            codes = tile_codes(problem.grid, pos)
            assert len(codes) == problem.side**2 and all(0 <= c < NUM_CODES for c in codes)
            assert decode_tiles(codes, problem.side) == (problem.grid, pos)
            assert decode_image(image, cell=6) == codes
    with pytest.raises(ValueError, match="one agent"):
        decode_tiles([0, 0, 0, 3], 2)


def test_save_png_writes_the_image(tmp_path: Path) -> None:
    image = render_state(("..", ".G"), (0, 0))
    save_png(image, tmp_path / "state.png")
    assert (np.asarray(Image.open(tmp_path / "state.png")) == image).all()


def test_documents_train_on_the_reasoning_only() -> None:
    source = GridWorldSource(config())
    doc = next(iter(source.documents()))
    (question, trained_q), (response, trained_r) = doc.metadata["segments"]
    assert doc.text == question + response and not trained_q and trained_r
    assert response.startswith("step 1:") and "moves:" in question
    assert source.fingerprint() == GridWorldSource(config(test={"size": [9, 10]})).fingerprint()
    assert source.fingerprint() != GridWorldSource(config(seed=1)).fingerprint()
    assert "frozenlake" in source.describe()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("size: [6, 4]", "data.sources.0.size: size must be [min, max]"),
        ("num_actions: [0, 3]", "data.sources.0.num_actions: num_actions must be at least 1"),
        ("test: {size: [5, 9]}", "test.size [5, 9] overlaps size [4, 6]"),
        ("questions: []", "data.sources.0.questions"),
        ("task: sokoban", "data.sources.0.task"),
        ("obstacle_fraction: 0.6", "data.sources.0.obstacle_fraction"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, data: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"data: {{type: grid_world, {data}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_neat_train_runs_on_grid_world(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(
        "name: grid\n"
        "model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 64, dropout: 0.0}\n"
        "data: {type: grid_world, task: frozenlake, num_train: 200, format: prompt_response,"
        " tokenizer: {type: byte}, val_fraction: 0.1}\n"
        "optimization: {lr: 1.0e-3, warmup_steps: 1}\n"
        "training: {max_steps: 3, batch_size: 4, device: cpu, compile: false}\n"
        "evaluation: {interval: 3, batches: 1}\n"
        "checkpoint: {interval: 3, keep_last: 1}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["train", "-c", str(path), "--run-dir", str(tmp_path / "run")], prog_name="neat"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "step_3").is_dir()
