"""Few-parameter fine-tuning on the synthetic math tasks: full vs LoRA vs SVF.

What it measures: a small GPT (examples/finetune_math_base.yaml: 4 layers x 128, byte
tokenizer, block_size 64) is trained on a mix of tasks (add, sub, mul, linear), then, for each
task, fine-tuned from that base on the task's problems only with `finetune.method` full, lora
and svf (same steps per method, a learning rate per method). For the base and each tuned run
it records the exact_match accuracy of greedy answers on every split the evaluator reports:

- ``id``: fresh problems of the task (mostly seen in training);
- ``heldout``: problems of the task never trained on (the generalisation);
- ``ood``: here the *other* tasks' problems (``data.test`` is set to them), so a drop from
  the base's ``ood`` is what tuning on one task forgets of the others;

and `val_loss` (teacher-forced loss on the task's id and heldout answers: it separates the
methods even where a short run leaves exact-match accuracy near zero), with the number of
trainable parameters (full: all; lora/svf: the `finetune_applied` event of
the run's log.jsonl) and the wall-clock seconds of each training run. Everything goes through
the CLI in subprocesses (`python -m neat train/eval`); rows land in `<out>/results.jsonl`
(one per task x method, "base" included) and a markdown table is printed.

Tasks and the levels that hold them (the source's `levels` x `operations`): add and sub at
levels 2-3 (two and three digits), mul at level 3 (three digits times one), linear at level 5
(``ax+b=c,x=``).

Run:
    python benchmarks/finetune_math.py --quick                  # smoke run, ~2-3 minutes
    python benchmarks/finetune_math.py --out runs/finetune_math # defaults: 1500 / 300 steps

Measured (2026-12-02, one H200, bf16, three device calls: the tuning rows, then
`--reuse-base --methods --dispatch` on the same base):

    python benchmarks/finetune_math.py --out runs/fm --device cuda --precision bf16 \\
        --threads 4 --model model.n_layer=6 --model model.n_head=8 --model model.n_embd=256 \\
        --batch-size 64 --base-steps 3000 --tune-steps 300 --num-problems 200 [--dispatch]

    | task | method | trainable | acc_id | acc_heldout | acc_ood | val_loss | s |
    |---|---|---|---|---|---|---|---|
    | add | base | - | 0.545 | 0.560 | 0.670 | 0.301 | 50 |
    | add | full | 4,787,712 | 0.950 | 0.925 | 0.335 | 0.068 | 16 |
    | add | lora | 196,608 | 0.870 | 0.845 | 0.480 | 0.118 | 19 |
    | add | svf | 6,144 | 0.605 | 0.585 | 0.585 | 0.277 | 17 |
    | add | svf-rl | 6,144 | 0.580 | 0.600 | 0.685 | 0.287 | 63 |
    | sub | base | - | 0.575 | 0.580 | 0.665 | 0.362 | 50 |
    | sub | full | 4,787,712 | 0.935 | 0.905 | 0.165 | 0.089 | 16 |
    | sub | lora | 196,608 | 0.815 | 0.795 | 0.390 | 0.172 | 15 |
    | sub | svf | 6,144 | 0.595 | 0.610 | 0.495 | 0.342 | 16 |
    | sub | svf-rl | 6,144 | 0.610 | 0.585 | 0.660 | 0.328 | 45 |
    | mul | base | - | 0.140 | 0.205 | 0.650 | 0.700 | 50 |
    | mul | full | 4,787,712 | 0.470 | 0.455 | 0.340 | 0.350 | 14 |
    | mul | lora | 196,608 | 0.355 | 0.440 | 0.505 | 0.432 | 18 |
    | mul | svf | 6,144 | 0.160 | 0.185 | 0.470 | 0.700 | 17 |
    | mul | svf-rl | 6,144 | 0.145 | 0.225 | 0.655 | 0.655 | 37 |
    | linear | base | - | 0.930 | 0.940 | 0.535 | 0.069 | 50 |
    | linear | full | 4,787,712 | 0.985 | 0.970 | 0.420 | 0.030 | 15 |
    | linear | lora | 196,608 | 0.965 | 0.950 | 0.515 | 0.045 | 17 |
    | linear | svf | 6,144 | 0.865 | 0.915 | 0.470 | 0.099 | 17 |
    | linear | svf-rl | 6,144 | 0.950 | 0.975 | 0.525 | 0.036 | 72 |

Dispatch (SFT experts, 300 steps each; dispatch_acc in brackets): add none 0.545/0.560,
oracle 0.605/0.585, prompt 0.585/0.565 (0.51), classifier 0.550/0.555 (0.58), cem
0.605/0.605; sub 0.575/0.580, 0.595/0.610, 0.555/0.545 (0.21), 0.495/0.520 (0.20),
0.545/0.560; mul 0.140/0.205, 0.160/0.185, 0.105/0.140 (0.12), 0.160/0.185 (0.75),
0.140/0.195; linear 0.930/0.940, 0.865/0.915, 0.660/0.705 (0.15), 0.655/0.700 (0.18),
0.860/0.920 (acc_id / acc_heldout). An earlier 6000-step base (add 0.995 already) left
nothing to tune on add: full 0.995 with ood 0.945 -> 0.655, lora ood 0.935, svf 0.870,
svf-rl 0.955.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = ROOT / "examples" / "finetune_math_base.yaml"

# the levels of the base mix, and which of them offer each task (see neat.data.synthetic_math)
BASE_LEVELS = (2, 3, 5)
TASK_LEVELS: dict[str, tuple[int, ...]] = {
    "add": (2, 3),
    "sub": (2, 3),
    "mul": (3,),
    "linear": (5,),
    "multi": (4,),
}
METHODS = ("full", "lora", "svf", "svf-rl")  # svf-rl: z trained by reinforce, not sft
SPLITS = ("id", "heldout", "ood")


def levels_of(tasks: list[str], allowed: tuple[int, ...] | None = None) -> list[int]:
    """The levels (of `allowed`, default all) at which some of `tasks` exist."""
    found = {level for task in tasks for level in TASK_LEVELS[task]}
    if allowed is not None:
        found &= set(allowed)
    return sorted(found)


def yaml_list(values: list[Any]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def common_sets(args: argparse.Namespace) -> list[str]:
    """Overrides every run shares (and every `neat eval`: the model is built from them)."""
    return [
        *args.model_sets,
        f"evaluation.num_problems={args.num_problems}",
        f"training.batch_size={args.batch_size}",
        f"training.device={args.device}",
        f"training.precision={args.precision}",
    ]


def base_sets(args: argparse.Namespace, tasks: list[str]) -> list[str]:
    levels = levels_of(tasks)
    sets = [
        f"data.levels={yaml_list(levels)}",
        f"data.operations={yaml_list(tasks)}",
        f"training.max_steps={args.base_steps}",
        f"optimization.lr={args.lr_base}",
        f"optimization.min_lr={args.lr_base / 10}",
        f"optimization.warmup_steps={max(1, min(100, args.base_steps // 10))}",
        f"data.num_train={args.num_train}",
    ]
    return sets + common_sets(args)


def task_sets(args: argparse.Namespace, task: str, tasks: list[str]) -> list[str]:
    """The data of one task; `test` (the ood split) is the other tasks of the mix."""
    others = [t for t in tasks if t != task]
    if not others:  # a single task: keep the base config's own ood problems
        test = "data.test={levels: [4], operations: [multi]}"
    else:
        test = (
            f"data.test={{levels: {yaml_list(levels_of(others))}, operations: {yaml_list(others)}}}"
        )
    return [
        f"data.levels={yaml_list(levels_of([task]))}",
        f"data.operations=[{task}]",
        test,
        f"data.num_train={args.num_train}",
        *common_sets(args),
    ]


def tune_sets(args: argparse.Namespace, method: str, base_run: Path) -> list[str]:
    lr = {"full": args.lr_full, "lora": args.lr_lora, "svf": args.lr_svf, "svf-rl": args.lr_svf_rl}[
        method
    ]
    objective = "reinforce" if method.endswith("-rl") else "sft"
    return [
        f"model.init_from={base_run}",
        f"finetune.method={method.removesuffix('-rl')}",
        f"finetune.objective={objective}",
        f"finetune.reinforce.kl_coef={args.kl_coef}",
        f"finetune.targets={args.targets}",
        f"finetune.lora={{rank: {args.lora_rank}, alpha: {args.lora_alpha}, dropout: 0.0}}",
        f"training.max_steps={args.tune_steps}",
        f"optimization.lr={lr}",
        f"optimization.min_lr={lr / 10}",
        f"optimization.warmup_steps={max(1, min(30, args.tune_steps // 10))}",
    ]


def subprocess_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env["TORCH_NUM_THREADS"] = str(threads)
    return env


def neat(command: str, config: Path, sets: list[str], extra: list[str], env: dict[str, str]) -> str:
    """Run `python -m neat COMMAND -c CONFIG --set ... EXTRA`; its stdout (raises on failure)."""
    cmd = [sys.executable, "-m", "neat", command, "-c", str(config), *extra]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        shown = " ".join(cmd)
        tail = proc.stderr[-3000:] + proc.stdout[-2000:]
        raise RuntimeError(f"command failed ({proc.returncode}): {shown}\n{tail}")
    return proc.stdout


def train(run_dir: Path, sets: list[str], env: dict[str, str], config: Path = BASE_CONFIG) -> float:
    """Train into `run_dir` (a fresh one: an old run there is removed); the seconds it took."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    neat("train", config, sets, ["--run-dir", str(run_dir)], env)
    return time.perf_counter() - start


def evaluate(
    run_dir: Path, sets: list[str], env: dict[str, str], extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`neat eval --json` of the run's latest checkpoint under the given data overrides
    (numbers, and the CEM weights when `extra` asks for --adapt cem)."""
    out = neat("eval", BASE_CONFIG, sets, ["--checkpoint", str(run_dir), "--json", *extra], env)
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return {
                k: v
                for k, v in json.loads(line).items()
                if isinstance(v, int | float) or k == "cem_weights"
            }
    raise RuntimeError(f"no JSON metrics in the output of neat eval:\n{out[-2000:]}")


def log_events(run_dir: Path, event: str) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("event") == event:
            rows.append(row)
    return rows


def final_eval(run_dir: Path) -> dict[str, float] | None:
    """The metrics of the evaluation a run makes when it ends (its last `eval` event)."""
    rows = log_events(run_dir, "eval")
    if not rows:
        return None
    return {k: v for k, v in rows[-1].items() if isinstance(v, int | float) and k != "step"}


def trainable_params(run_dir: Path) -> int | None:
    """The `finetune_applied` event's `trainable`, else (full) the run's parameter count."""
    applied = log_events(run_dir, "finetune_applied")
    if applied and "trainable" in applied[-1]:
        return int(applied[-1]["trainable"])
    start = log_events(run_dir, "run_start")
    if start and "num_params" in start[-1]:
        return int(start[-1]["num_params"])
    return None


def split_accuracies(metrics: dict[str, float]) -> dict[str, float]:
    """`acc` and `acc_<split>` for every split present (per-level keys left out)."""
    acc = {"all": metrics["acc"]} if "acc" in metrics else {}
    for key, value in metrics.items():
        parts = key.split("_")
        if len(parts) == 2 and parts[0] == "acc" and parts[1] != "unencodable":
            acc[parts[1]] = value
    return acc


def build_experts(args: argparse.Namespace, base_run: Path, env: dict[str, str]) -> Path:
    """`neat adapt experts` for every task (and the classifier), z trained by `--objective`."""
    experts = args.out / "experts"
    if experts.exists():
        shutil.rmtree(experts)
    cmd = [sys.executable, "-m", "neat", "adapt", "experts", "--checkpoint", str(base_run)]
    cmd += ["--tasks", ",".join(args.tasks), "--out", str(experts)]
    cmd += ["--steps", str(args.tune_steps), "--lr", str(args.lr_svf)]
    cmd += ["--objective", args.expert_objective]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"adapt experts failed: {proc.stderr[-3000:]}")
    return experts


def dispatch_rows(
    args: argparse.Namespace, base_run: Path, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Per task, accuracy when the task is not told: each --adapt strategy on the task's
    problems (and the other tasks' as ood), against the base (none) and the oracle."""
    t0 = time.perf_counter()
    experts = build_experts(args, base_run, env)
    print(f"experts built in {time.perf_counter() - t0:.0f}s -> {experts}", flush=True)
    rows = []
    for task in args.tasks:
        data = task_sets(args, task, args.tasks)
        for strategy in args.strategies:
            extra = ("--experts", str(experts), "--adapt", strategy, "--shots", str(args.shots))
            t0 = time.perf_counter()
            metrics = evaluate(base_run, data, env, extra)
            r = row(
                task, f"T2-{strategy}", None, metrics, args.tune_steps, time.perf_counter() - t0
            )
            r["dispatch_acc"] = metrics.get("dispatch_acc")
            r["cem_weights"] = metrics.get("cem_weights")
            rows.append(r)
    return rows


def row(
    task: str,
    method: str,
    params: int | None,
    metrics: dict[str, float],
    steps: int,
    seconds: float,
) -> dict[str, Any]:
    return {
        "task": task,
        "method": method,
        "trainable_params": params,
        "accuracy": split_accuracies(metrics),
        "val_loss": metrics.get("val_loss"),
        "steps": steps,
        "seconds": round(seconds, 1),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    splits = [s for s in ("id", "heldout", "ood") if any(s in r["accuracy"] for r in rows)]
    extra = sorted({s for r in rows for s in r["accuracy"]} - set(splits) - {"all"})
    cols = splits + extra
    routed = any(r.get("dispatch_acc") is not None for r in rows)
    head = ["task", "method", "trainable", *(f"acc_{c}" for c in cols), "val_loss", "steps", "s"]
    head += ["dispatch_acc"] if routed else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        accs = [f"{r['accuracy'][c]:.3f}" if c in r["accuracy"] else "-" for c in cols]
        params = f"{r['trainable_params']:,}" if r["trainable_params"] is not None else "-"
        loss = f"{r['val_loss']:.3f}" if r.get("val_loss") is not None else "-"
        cells = [
            r["task"],
            r["method"],
            params,
            *accs,
            loss,
            str(r["steps"]),
            f"{r['seconds']:.0f}",
        ]
        if routed:
            d = r.get("dispatch_acc")
            cells.append(f"{d:.3f}" if d is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = subprocess_env(args.threads)
    tasks: list[str] = args.tasks
    results = out / "results.jsonl"
    if not args.reuse_base:
        results.write_text("")
    rows: list[dict[str, Any]] = []

    def record(r: dict[str, Any]) -> None:
        rows.append(r)
        with results.open("a") as f:
            f.write(json.dumps(r) + "\n")
        accs = ", ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
        print(f"[{r['task']:>6} {r['method']:>4}] {accs} ({r['seconds']:.0f}s)", flush=True)

    base_run = out / "base"
    if args.reuse_base and (base_run / "checkpoints").is_dir():
        print(f"reusing the base at {base_run}", flush=True)
        base_seconds = 0.0
    else:
        print(f"training the base on {tasks} for {args.base_steps} steps -> {base_run}", flush=True)
        base_seconds = train(base_run, base_sets(args, tasks), env)
    base_params = trainable_params(base_run)
    for task in args.tune_tasks or tasks:
        data = task_sets(args, task, tasks)
        t0 = time.perf_counter()
        metrics = evaluate(base_run, data, env)
        record(row(task, "base", None, metrics, args.base_steps, base_seconds))
        print(f"  (base eval on {task}: {time.perf_counter() - t0:.0f}s)", flush=True)
        for method in args.methods:
            run_dir = out / f"{task}-{method}"
            seconds = train(run_dir, data + tune_sets(args, method, base_run), env)
            metrics = final_eval(run_dir) or evaluate(run_dir, data, env)
            params = trainable_params(run_dir)
            if method == "full" and params is None:
                params = base_params
            record(row(task, method, params, metrics, args.tune_steps, seconds))
    if args.dispatch:
        for r in dispatch_rows(args, base_run, env):
            record(r)
    print()
    print(markdown(rows))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, default=Path("runs/finetune_math"), help="output folder")
    p.add_argument("--base-steps", type=int, default=1500)
    p.add_argument("--tune-steps", type=int, default=300)
    p.add_argument(
        "--tasks", nargs="+", default=["add", "sub", "mul", "linear"], choices=sorted(TASK_LEVELS)
    )
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    p.add_argument(
        "--dispatch", action="store_true", help="then experts per task and two-pass dispatch"
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        default=["none", "oracle", "prompt", "classifier", "cem"],
        choices=["none", "oracle", "prompt", "classifier", "cem"],
    )
    p.add_argument("--shots", type=int, default=8, help="CEM's few-shot examples")
    p.add_argument("--expert-objective", default="sft", choices=["sft", "reinforce"])
    p.add_argument("--lr-base", type=float, default=2e-3)
    p.add_argument("--lr-full", type=float, default=5e-4)
    p.add_argument("--lr-lora", type=float, default=2e-3)
    p.add_argument("--lr-svf", type=float, default=1e-2)
    p.add_argument("--lr-svf-rl", type=float, default=2e-3, help="svf-rl (the paper: Adam 2e-3)")
    p.add_argument("--kl-coef", type=float, default=0.1, help="finetune.reinforce.kl_coef")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16)
    p.add_argument("--targets", default="[blocks.*]", help="finetune.targets (YAML list)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-train", type=int, default=50_000, help="problems per source")
    p.add_argument("--num-problems", type=int, default=200, help="eval problems per split")
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads per subprocess")
    p.add_argument("--device", default="cpu", help="training.device of every run (cuda: a GPU)")
    p.add_argument("--precision", default="fp32", help="training.precision of every run")
    p.add_argument(
        "--model",
        dest="model_sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model override for base and tuned runs alike, e.g. model.n_embd=256",
    )
    p.add_argument(
        "--reuse-base", action="store_true", help="keep <out>/base when it holds a checkpoint"
    )
    p.add_argument(
        "--tune-tasks", nargs="+", default=None, help="tune only these (default: all --tasks)"
    )
    p.add_argument("--quick", action="store_true", help="a tiny smoke setting (a few steps)")
    args = p.parse_args(argv)
    if args.quick:
        args.base_steps, args.tune_steps = min(args.base_steps, 20), min(args.tune_steps, 5)
        args.num_problems, args.num_train = min(args.num_problems, 20), min(args.num_train, 2000)
    if len(set(args.tasks)) != len(args.tasks):
        p.error("--tasks lists a task twice")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    run(args)


if __name__ == "__main__":
    main()
