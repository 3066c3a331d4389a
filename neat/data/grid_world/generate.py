"""Grid-world problems with per-step states: the data of MVoT-style spatial reasoning.

The tasks follow MVoT's MAZE and FROZENLAKE (Li et al. 2025, arXiv 2501.07542); the config and
question kinds are described in `neat.data.grid_world.spec`. Every problem is a pure function
of (seed, stream, index), so the source streams and any problem can be regenerated alone:

- ``train`` draws grids of a side in `size` and skips held-out problems;
- ``test-id`` draws the same way (fresh samples of what training sees);
- ``test-heldout`` draws the same way and keeps only held-out problems, which no training
  document asks (a hash of the problem and the seed decides, as in synthetic_math);
- ``test-ood`` draws grids of a side in `test.size`, which training never draws.

Coordinates are ``(row, col)`` from the top-left cell ``(0,0)``; ``up`` decreases the row.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.errors import DataError

__all__ = [
    "ACTIONS",
    "AGENT",
    "FLOOR",
    "GENERATOR_VERSION",
    "GOAL",
    "HOLE",
    "MOVES",
    "TEST_SPLITS",
    "WALL",
    "GridProblem",
    "Pos",
    "Trajectory",
    "distances_to",
    "draw_world",
    "eval_problem",
    "is_held_out",
    "next_action",
    "problems",
    "simulate",
    "train_problem",
]

# Bump when the problems a config generates change: the token cache then misses.
GENERATOR_VERSION = "1"

Pos = tuple[int, int]
FLOOR, WALL, HOLE, GOAL, AGENT = ".", "#", "H", "G", "A"
ACTIONS: tuple[str, ...] = ("up", "down", "left", "right")  # also the tie-breaking order
MOVES: dict[str, Pos] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

Split = Literal["train", "test", "test_id", "test_heldout", "test_ood"]
TestSplit = Literal["id", "heldout", "ood"]
TEST_SPLITS: tuple[TestSplit, ...] = ("id", "heldout", "ood")

QUESTIONS: dict[str, str] = {
    "final_position": "where does the agent end up?",
    "falls/frozenlake": "does the agent fall into a hole?",
    "falls/maze": "does the agent hit a wall?",
    "next_action": "which move next starts a shortest path to the goal?",
}


@dataclass(frozen=True, slots=True)
class Trajectory:
    """What `simulate` returns: the position after each executed move, whether each move was
    blocked (a wall or the edge: the agent stays), and whether the last one fell into a hole
    (which ends the episode, so `states` may be shorter than the moves)."""

    states: tuple[Pos, ...]
    blocked: tuple[bool, ...]
    fell: bool


def _inside(grid: Sequence[str], pos: Pos) -> bool:
    return 0 <= pos[0] < len(grid) and 0 <= pos[1] < len(grid[0])


def _step(grid: Sequence[str], pos: Pos, action: str) -> Pos | None:
    """The cell `action` leads to, or None when a wall or the edge blocks it."""
    dr, dc = MOVES[action]
    nxt = (pos[0] + dr, pos[1] + dc)
    if not _inside(grid, nxt) or grid[nxt[0]][nxt[1]] == WALL:
        return None
    return nxt


def simulate(grid: Sequence[str], start: Pos, actions: Sequence[str]) -> Trajectory:
    """Run `actions` from `start`: blocked moves stay in place, entering a hole ends it."""
    pos, states, blocked = start, [], []
    for action in actions:
        nxt = _step(grid, pos, action)
        blocked.append(nxt is None)
        pos = pos if nxt is None else nxt
        states.append(pos)
        if grid[pos[0]][pos[1]] == HOLE:
            return Trajectory(tuple(states), tuple(blocked), fell=True)
    return Trajectory(tuple(states), tuple(blocked), fell=False)


def distances_to(grid: Sequence[str], goal: Pos) -> dict[Pos, int]:
    """BFS moves from every cell that can reach `goal` without walls or holes."""
    dist, queue = {goal: 0}, deque([goal])
    while queue:
        pos = queue.popleft()
        for action in ACTIONS:
            nxt = _step(grid, pos, action)
            if nxt is not None and nxt not in dist and grid[nxt[0]][nxt[1]] != HOLE:
                dist[nxt] = dist[pos] + 1
                queue.append(nxt)
    return dist


def next_action(grid: Sequence[str], pos: Pos, goal: Pos) -> str | None:
    """The first move (in `ACTIONS` order) of a shortest path to `goal`; None at the goal or
    where the goal cannot be reached."""
    dist = distances_to(grid, goal)
    if pos == goal or pos not in dist:
        return None
    for action in ACTIONS:
        nxt = _step(grid, pos, action)
        if nxt is not None and dist.get(nxt) == dist[pos] - 1:
            return action
    return None  # unreachable: a reachable cell has a neighbour one step nearer


def draw_world(
    task: str, side: int, obstacle_fraction: float, rng: random.Random
) -> tuple[tuple[str, ...], Pos, Pos]:
    """A `side` x `side` grid, start and goal: obstacles (walls for maze, holes for
    frozenlake) never on the start or goal, and the goal reachable from the start."""
    obstacle = WALL if task == "maze" else HOLE
    cells = [(r, c) for r in range(side) for c in range(side)]
    while True:  # an empty grid always passes, so this ends (obstacle_fraction <= 0.5)
        start, goal = rng.sample(cells, 2)
        rows = [
            [
                GOAL
                if (r, c) == goal
                else FLOOR
                if (r, c) == start or rng.random() >= obstacle_fraction
                else obstacle
                for c in range(side)
            ]
            for r in range(side)
        ]
        grid = tuple("".join(row) for row in rows)
        if start in distances_to(grid, goal):
            return grid, start, goal


def _cell(pos: Pos) -> str:
    return f"({pos[0]},{pos[1]})"


@dataclass(frozen=True, slots=True)
class GridProblem:
    """One problem: the grid (rows of ``.`` floor, ``#`` wall, ``H`` hole, ``G`` goal; the
    agent is not in it), start, goal, moves, the question kind, its answer, and `states`, the
    agent's cell after each move (shorter than `actions` when it fell). `split` is ``train``
    or the test split it was drawn for."""

    task: str
    grid: tuple[str, ...]
    start: Pos
    goal: Pos
    actions: tuple[str, ...]
    kind: str
    answer: str
    states: tuple[Pos, ...]
    blocked: tuple[bool, ...]
    fell: bool
    split: str = "train"

    @property
    def side(self) -> int:
        return len(self.grid)

    @property
    def positions(self) -> tuple[Pos, ...]:
        """The agent's cell in each image: the start, then after each executed move."""
        return (self.start, *self.states)

    @property
    def key(self) -> str:
        """The problem whatever split it was drawn for: held-out decisions and overlap checks
        use it."""
        where = f"{_cell(self.start)}{_cell(self.goal)}"
        return f"{self.task}|{'/'.join(self.grid)}|{where}|{' '.join(self.actions)}|{self.kind}"

    def board(self, agent: Pos) -> str:
        """The grid as text rows, ``A`` marking the agent (over whatever tile it is on)."""
        rows = [list(row) for row in self.grid]
        rows[agent[0]][agent[1]] = AGENT
        return "\n".join("".join(row) for row in rows)

    @property
    def question(self) -> str:
        kind = f"falls/{self.task}" if self.kind == "falls" else self.kind
        obstacle = "# wall" if self.task == "maze" else "H hole"
        return (
            f"{self.task} {self.side}x{self.side}, A agent, G goal, {obstacle}:\n"
            f"{self.board(self.start)}\nmoves: {', '.join(self.actions)}\n"
            f"question: {QUESTIONS[kind]}\n"
        )

    @property
    def chain_of_thought(self) -> str:
        """One line per executed move, then (for next_action) the distance that decides."""
        lines = []
        for i, (action, pos, blocked) in enumerate(
            zip(self.actions, self.states, self.blocked, strict=False), start=1
        ):
            note = " blocked" if blocked else ""
            if self.fell and i == len(self.states):
                note += " hole, fell"
            lines.append(f"step {i}: {action} -> {_cell(pos)}{note}\n")
        if self.kind == "next_action":
            steps = distances_to(self.grid, self.goal)[self.states[-1]]
            lines.append(f"goal {_cell(self.goal)} is {steps} moves away\n")
        return "".join(lines)

    @property
    def response(self) -> str:
        """What the model is trained to write after the question."""
        return f"{self.chain_of_thought}answer: {self.answer}\n"


def _answer(task: str, kind: str, grid: Sequence[str], goal: Pos, run: Trajectory) -> str | None:
    """The answer by simulation; None when the question has none (next_action after a fall
    or at the goal)."""
    if kind == "final_position":
        return _cell(run.states[-1])
    if kind == "falls":
        return "yes" if (run.fell if task == "frozenlake" else any(run.blocked)) else "no"
    if run.fell:
        return None
    return next_action(grid, run.states[-1], goal)


def draw_problem(
    cfg: GridWorldSourceConfig, side: int, kind: str, rng: random.Random
) -> GridProblem | None:
    """One problem of `kind` on a `side` grid; None when its question has no answer."""
    grid, start, goal = draw_world(cfg.task, side, cfg.obstacle_fraction, rng)
    actions = tuple(rng.choice(ACTIONS) for _ in range(rng.randint(*cfg.num_actions)))
    run = simulate(grid, start, actions)
    answer = _answer(cfg.task, kind, grid, goal, run)
    if answer is None:
        return None
    return GridProblem(
        cfg.task, grid, start, goal, actions, kind, answer, run.states, run.blocked, run.fell
    )


def is_held_out(cfg: GridWorldSourceConfig, problem: GridProblem) -> bool:
    """A fixed hash of (seed, problem) decides; the same in every run."""
    digest = hashlib.blake2b(f"{cfg.seed}/holdout/{problem.key}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < cfg.holdout_fraction


def _max_attempts(cfg: GridWorldSourceConfig) -> int:
    return max(1000, int(100 / min(cfg.holdout_fraction, 1 - cfg.holdout_fraction)))


def _draw_until(
    cfg: GridWorldSourceConfig,
    sizes: tuple[int, int],
    stream: str,
    index: int,
    accept: Callable[[GridProblem], bool],
) -> GridProblem:
    """Problem `index` of `stream`: the first draw `accept` takes. Kinds take turns; for
    ``falls`` the wanted answer alternates yes/no, so that "no" alone does not score well
    (the first accepted draw stands in when no draw gives the wanted answer)."""
    kind = cfg.questions[index % len(cfg.questions)]
    wanted = ("yes", "no")[(index // len(cfg.questions)) % 2] if kind == "falls" else None
    # A str seed goes through SHA-512: the same numbers on every platform and Python run.
    rng = random.Random(f"grid_world/{GENERATOR_VERSION}/{cfg.seed}/{cfg.task}/{stream}/{index}")
    fallback = None
    for _ in range(_max_attempts(cfg)):
        problem = draw_problem(cfg, rng.randint(*sizes), kind, rng)
        if problem is None or not accept(problem):
            continue
        if wanted is None or problem.answer == wanted:
            return problem
        fallback = fallback or problem
    if fallback is None:
        raise DataError(
            f"grid_world: no {kind} problem accepted for {stream} {index}; raise "
            "holdout_fraction (test-heldout) or lower it (train), or widen size"
        )
    return fallback


def train_problem(cfg: GridWorldSourceConfig, index: int, stream: str = "train") -> GridProblem:
    """Training problem `index`: a grid side in `size`, not held out."""
    return _draw_until(cfg, cfg.size, stream, index, lambda p: not is_held_out(cfg, p))


def eval_problem(cfg: GridWorldSourceConfig, index: int, split: TestSplit) -> GridProblem:
    """Test problem `index` of `split`: ``id``, a fresh draw of what training sees;
    ``heldout``, a held-out problem of the training sizes; ``ood``, a grid of `test.size`."""
    if split == "id":
        problem = train_problem(cfg, index, stream="test-id")
    elif split == "heldout":
        problem = _draw_until(cfg, cfg.size, "test-heldout", index, lambda p: is_held_out(cfg, p))
    elif split == "ood":
        problem = _draw_until(cfg, cfg.test.size, "test-ood", index, lambda p: True)
    else:
        raise ValueError(f"unknown test split {split!r}; expected one of {TEST_SPLITS}")
    return replace(problem, split=split)


def problems(cfg: GridWorldSourceConfig, split: Split, n: int) -> list[GridProblem]:
    """`n` problems of `split`. ``train``: the first `n` training documents' problems.
    ``test``: `n` of each test split in turn (``id``, ``heldout``, ``ood``); ``test_id``,
    ``test_heldout`` and ``test_ood`` give one split only."""
    if split == "train":
        return [train_problem(cfg, i) for i in range(n)]
    if split == "test":
        return [eval_problem(cfg, i, part) for part in TEST_SPLITS for i in range(n)]
    if split in ("test_id", "test_heldout", "test_ood"):
        part: TestSplit = split.removeprefix("test_")  # type: ignore[assignment]
        return [eval_problem(cfg, i, part) for i in range(n)]
    raise ValueError(
        f"unknown split {split!r}; expected train, test, test_id, test_heldout or test_ood"
    )
