"""Two-pass inference with SVF experts (Transformer², Sun, Cetin & Tang 2025, §3.2).

Pass 1 decides which weights a problem needs; pass 2 answers with them. An experts folder
(`neat adapt experts`) holds one z-vector per task for one base; the strategies
(`STRATEGIES`) differ only in pass 1:

- ``none``: the base weights (z = 1), the reference every strategy is measured against;
- ``oracle``: the expert of the problem's true operation, read from its label (an upper
  bound for the figures, not a deployable strategy); an operation without an expert gets the
  base weights, as the paper's "others" class does;
- ``prompt``: the base model itself classifies: each task's label is scored as the
  continuation of a fixed dispatch prompt (`DispatchPrompt`) after the question, and the
  label with the lowest summed NLL wins. A base that never saw the dispatch prompt is near
  chance: that is a finding, not a bug;
- ``classifier``: the same rule with a classification expert's z loaded (an SVF z trained by
  `train_classifier` to complete the dispatch prompt with the right label);
- ``cem``: few-shot adaptation: the cross-entropy method searches mixing weights of all
  experts for the best exact-match accuracy on a few labelled examples (ties broken by the
  answers' mean log-likelihood, as the reference code does); one mixed z serves every problem.

Pass 1 leaves the base weights as they were: it only sets z-vectors, and every z is reset to
ones (the base bit for bit, see `SVFLinear`) after each use.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neat.config.schema import ExperimentConfig
from neat.data.synthetic_math import MathProblem, SyntheticMathSourceConfig, labelled_problems
from neat.data.synthetic_math.prompts import IGNORE, prompt_separator, try_encode
from neat.errors import CheckpointError, ConfigError, DataError
from neat.evaluation.exact_match import (
    ExactMatchEvaluator,
    ExactMatchEvaluatorConfig,
    Losses,
    exact_match_evaluator,
    teacher_forced_batch,
)
from neat.evaluation.generation import TextStream, check_sampling, iter_tokens
from neat.inference import refuse_non_finite, text_pieces
from neat.interfaces import ITokenizer
from neat.models.adapters.svf import (
    apply_svf,
    base_fingerprint,
    cem_search,
    load_expert,
    load_svf_z,
    mix_experts,
    svf_parameters,
    svf_z,
)
from neat.models.load import load_trained_model
from neat.optimization.precision import autocast, resolve_precision
from neat.persistence import resolve_checkpoint
from neat.training.device import resolve_device

__all__ = [
    "CLASSIFIER_FILE",
    "MANIFEST",
    "STRATEGIES",
    "DispatchPrompt",
    "ExpertSet",
    "cem_mixture",
    "dispatch_prompt",
    "evaluate_with_experts",
    "few_shot_problems",
    "load_examples",
    "load_expert_set",
    "route",
    "stream_with_experts",
    "task_nats",
    "train_classifier",
    "using_z",
]

log = structlog.get_logger(__name__)

Strategy = Literal["none", "oracle", "prompt", "classifier", "cem"]
STRATEGIES: tuple[Strategy, ...] = ("none", "oracle", "prompt", "classifier", "cem")
CLASSIFIER_FILE = "classifier.safetensors"
MANIFEST = "manifest.json"  # of an experts folder; written by neat.experts
TASK_PREFIX = "\ntask: "
Z = dict[str, Tensor]


# -- the dispatch prompt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchPrompt:
    """separator + question + `prefix` + label + newline: how pass 1 asks for the task.

    `labels` maps each task to the text the model should continue with: the task's name when
    the tokenizer can write it, else its index ("0", "1", ...), because a char vocabulary
    fitted to symbolic math has digits and a newline but no letters. The labels are then
    arbitrary to the base model, which only a trained classifier can use."""

    prefix: str
    labels: dict[str, str]

    def pairs(
        self, tokenizer: ITokenizer, question: str
    ) -> list[tuple[list[int], list[int]]] | None:
        """(prompt ids, label ids) for each task in order, or None for a question the
        tokenizer cannot encode."""
        head = try_encode(tokenizer, question + self.prefix)
        if head is None:
            return None
        prompt = prompt_separator(tokenizer) + head
        return [(prompt, tokenizer.encode(label + "\n")) for label in self.labels.values()]

    def as_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "labels": dict(self.labels)}


def dispatch_prompt(tokenizer: ITokenizer, tasks: Sequence[str]) -> DispatchPrompt:
    """The dispatch prompt this tokenizer can write: task names after "task: ", else indices
    after a newline (see `DispatchPrompt`)."""
    named = DispatchPrompt(TASK_PREFIX, {t: t for t in tasks})
    if all(try_encode(tokenizer, text + "\n") for text in [TASK_PREFIX, *tasks]):
        return named
    numbered = DispatchPrompt("\n", {t: str(k) for k, t in enumerate(tasks)})
    if all(try_encode(tokenizer, label + "\n") for label in numbered.labels.values()):
        return numbered
    raise ConfigError(
        "the tokenizer can write neither the task names nor digits after a newline, so no "
        "dispatch prompt can be built; train the base with data.tokenizer.type: byte"
    )


@torch.no_grad()
def task_nats(
    model: nn.Module,
    tokenizer: ITokenizer,
    questions: Sequence[str],
    prompt: DispatchPrompt,
    *,
    block_size: int,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 128,
) -> Tensor:
    """Summed NLL (nats) of each task's label after each question: (questions, tasks), inf
    for a question the tokenizer cannot encode."""
    n_tasks = len(prompt.labels)
    out = torch.full((len(questions), n_tasks), math.inf, dtype=torch.float64)
    rows: list[tuple[int, int, tuple[list[int], list[int]]]] = []
    for i, question in enumerate(questions):
        pairs = prompt.pairs(tokenizer, question)
        rows += [(i, k, pair) for k, pair in enumerate(pairs or [])]
    was_training = model.training
    model.train(False)
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            x, y = teacher_forced_batch([pair for _, _, pair in chunk], block_size)
            x, y = x.to(device), y.to(device)
            with autocast(precision, device):
                logits = model(x)["logits"]
            nats = F.cross_entropy(
                logits.float().transpose(1, 2), y, ignore_index=IGNORE, reduction="none"
            ).sum(dim=1)
            for (i, k, _), value in zip(chunk, nats.tolist(), strict=True):
                out[i, k] = value
    finally:
        model.train(was_training)
    return out


def _ones(model: nn.Module) -> Z:
    return {name: torch.ones_like(z) for name, z in svf_z(model).items()}


@contextmanager
def using_z(model: nn.Module, zs: Mapping[str, Tensor] | None) -> Iterator[None]:
    """The model with `zs` loaded (None: the base weights), reset to z = 1 afterwards."""
    ones = _ones(model)
    load_svf_z(model, zs if zs is not None else ones)
    try:
        yield
    finally:
        load_svf_z(model, ones)


# -- an experts folder -----------------------------------------------------------------------------


@dataclass
class ExpertSet:
    """A base model with SVF layers at the experts' targets, and the experts' z-vectors."""

    folder: Path
    checkpoint: Path
    model: nn.Module
    tokenizer: ITokenizer
    config: ExperimentConfig  # the base's own
    device: torch.device
    experts: dict[str, Z]
    classifier: Z | None
    classifier_prompt: DispatchPrompt | None

    @property
    def tasks(self) -> list[str]:
        return list(self.experts)

    @property
    def block_size(self) -> int:
        return self.config.model.block_size

    def prompt(self) -> DispatchPrompt:
        """The dispatch prompt for `prompt` dispatch: the classifier's when there is one (the
        base sees the same text either way), else the one this tokenizer can write."""
        return self.classifier_prompt or dispatch_prompt(self.tokenizer, self.tasks)


def _read_manifest(folder: Path) -> dict[str, Any]:
    fix = f"write one with `neat adapt experts --checkpoint BASE --tasks add,mul --out {folder}`"
    manifest = folder / MANIFEST
    if not manifest.is_file():
        what = "does not exist" if not folder.exists() else f"has no {MANIFEST}"
        raise ConfigError(f"experts folder {folder} {what}; {fix}")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{manifest} cannot be read ({exc}); {fix}") from None
    keys = ("fingerprint", "targets", "experts")
    if not isinstance(data, dict) or any(k not in data for k in keys) or not data["experts"]:
        raise ConfigError(f"{manifest} lacks {', '.join(keys)} (or lists no expert); {fix}")
    return data


def _load_z(folder: Path, entry: Mapping[str, Any], what: str, fingerprint: str) -> Z:
    file = folder / str(entry.get("file", ""))
    if not file.is_file():
        raise CheckpointError(
            f"{what} of experts folder {folder}: {file} is missing; restore it or rebuild the "
            "folder with `neat adapt experts`"
        )
    try:
        return load_expert(file, fingerprint=fingerprint)
    except ValueError as exc:
        raise CheckpointError(f"{what}: {exc}") from None


def load_expert_set(folder: Path, checkpoint: Path, device: str = "auto") -> ExpertSet:
    """The base at `checkpoint` with the experts of `folder` (its manifest's targets wrapped
    in SVF layers, z = 1). The base must be the one the experts were trained on: the same
    weights, checked by fingerprint, wherever it lies."""
    manifest = _read_manifest(folder)
    path = resolve_checkpoint(checkpoint)
    model, tokenizer, config = load_trained_model(path, resolve_device(device))
    refuse_non_finite(model, path)
    fingerprint = base_fingerprint(model)
    if fingerprint != manifest["fingerprint"]:
        raise CheckpointError(
            f"the experts in {folder} were trained on base {manifest.get('base')!r} "
            f"(fingerprint {manifest['fingerprint']}), but --checkpoint {path} has fingerprint "
            f"{fingerprint}; pass --checkpoint {manifest.get('base')} or build experts for "
            f"this base with `neat adapt experts --checkpoint {path}`"
        )
    try:
        apply_svf(model, targets=manifest["targets"])
    except ValueError as exc:
        raise CheckpointError(f"{folder / MANIFEST}: targets do not fit the base: {exc}") from None
    model.train(False)
    experts = {
        task: _load_z(folder, entry, f"expert {task!r}", fingerprint)
        for task, entry in manifest["experts"].items()
    }
    classifier = classifier_prompt = None
    if isinstance(manifest.get("classifier"), dict):
        entry = manifest["classifier"]
        classifier = _load_z(folder, entry, "the classifier", fingerprint)
        classifier_prompt = DispatchPrompt(entry["prefix"], dict(entry["labels"]))
    for name, zs in [*experts.items(), ("classifier", classifier)]:
        if zs is not None:
            try:
                with using_z(model, zs):
                    pass
            except ValueError as exc:
                raise CheckpointError(f"{name} in {folder}: {exc}") from None
    device_ = next(model.parameters()).device
    return ExpertSet(
        folder, path, model, tokenizer, config, device_, experts, classifier, classifier_prompt
    )


# -- pass 1 ----------------------------------------------------------------------------------------


def route(
    experts: ExpertSet,
    questions: Sequence[str],
    strategy: Literal["prompt", "classifier"],
    *,
    precision: str = "fp32",
    batch_size: int = 128,
) -> list[str | None]:
    """The expert each question goes to (None: the base weights, for a question the
    tokenizer cannot encode), by the lowest-NLL label under the base (`prompt`) or the
    classifier's z (`classifier`)."""
    if strategy == "classifier":
        if experts.classifier is None:
            raise ConfigError(
                f"experts folder {experts.folder} has no classifier; rebuild it with "
                "`neat adapt experts --classifier`, or use --adapt prompt"
            )
        zs: Z | None = experts.classifier
    else:
        zs = None
    prompt = experts.prompt()
    with using_z(experts.model, zs):
        nats = task_nats(
            experts.model,
            experts.tokenizer,
            questions,
            prompt,
            block_size=experts.block_size,
            device=experts.device,
            precision=precision,
            batch_size=batch_size,
        )
    tasks = list(prompt.labels)
    return [tasks[int(row.argmin())] if bool(torch.isfinite(row).any()) else None for row in nats]


def _score_of(evaluator: ExactMatchEvaluator, model: nn.Module) -> float:
    """Exact-match accuracy on the shots, ties broken by the answers' mean log-likelihood:
    acc + exp(mean log-likelihood) / (2 n) stays below the next accuracy step 1 / n."""
    right, losses = evaluator.run(model)
    nats = sum(n for n, _ in losses.values())
    count = sum(c for _, c in losses.values())
    likelihood = math.exp(-nats / count) if count else 0.0
    return sum(ok for _, ok in right) / len(right) + likelihood / (2 * len(right))


def cem_mixture(
    experts: ExpertSet,
    shots: Sequence[MathProblem],
    *,
    precision: str = "fp32",
    iterations: int = 10,
    population: int = 16,
    elite: int = 4,
    seed: int = 0,
) -> tuple[dict[str, float], float, Z]:
    """Mixing weights (by task), their score (`_score_of`) and the mixed z, found by
    `cem_search` on the few-shot examples `shots`."""
    if not shots:
        raise ConfigError("CEM needs at least one few-shot example (--shots, --examples)")
    evaluator = ExactMatchEvaluator(
        shots, experts.tokenizer, experts.device, block_size=experts.block_size,
        precision=precision,
    )  # fmt: skip
    zs = list(experts.experts.values())

    def score(weights: Tensor) -> float:
        with using_z(experts.model, mix_experts(zs, weights)):
            return _score_of(evaluator, experts.model)

    weights, best = cem_search(
        score, len(zs), iterations=iterations, population=population, elite=elite, seed=seed
    )
    found = dict(zip(experts.tasks, weights.tolist(), strict=True))
    log.info("cem_weights", weights=found, score=best)
    return found, best, mix_experts(zs, weights)


def few_shot_problems(
    source: SyntheticMathSourceConfig, n: int, exclude: Sequence[MathProblem] = ()
) -> list[MathProblem]:
    """`n` labelled examples from the training distribution, none of them a question of
    `exclude` (the test problems): the few shots CEM may look at."""
    taken = {p.question for p in exclude}
    drawn = labelled_problems(source, "train", 4 * n + 64)
    shots = [p for p, _ in drawn if p.question not in taken][:n]
    if len(shots) < n:
        raise DataError(
            f"only {len(shots)} training problems differ from the test problems, {n} asked; "
            "lower --shots or widen the synthetic math distribution"
        )
    return shots


def load_examples(path: Path) -> list[MathProblem]:
    """Few-shot examples from JSON lines {"question": ..., "answer": ...} (for `neat generate
    --adapt cem`, whose prompt has no labelled neighbours of its own)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--examples {path} cannot be read ({exc})") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            examples.append(MathProblem(str(record["question"]), str(record["answer"]), 0, "id"))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f"--examples {path}, line {number}: expected a JSON object with "
                '"question" and "answer", e.g. {"question": "3+4=", "answer": "7"}'
            ) from None
    if not examples:
        raise ConfigError(f"--examples {path} holds no example; add JSON lines")
    return examples


# -- neat eval --experts ---------------------------------------------------------------------------


def _merge(a: Losses, b: Losses) -> Losses:
    return {k: (a.get(k, (0.0, 0))[0] + v[0], a.get(k, (0.0, 0))[1] + v[1]) for k, v in b.items()}


def _rates(pairs: Sequence[tuple[str, bool]], prefix: str) -> dict[str, float]:
    """`prefix<key>` = share of True among the pairs with that key."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, ok in pairs:
        counts[key][0] += ok
        counts[key][1] += 1
    return {f"{prefix}{k}": hits / total for k, (hits, total) in sorted(counts.items())}


def evaluate_with_experts(
    config: ExperimentConfig,
    checkpoint: Path,
    folder: Path,
    strategy: Strategy,
    *,
    shots: int = 8,
    cem_iterations: int = 10,
    cem_population: int = 16,
) -> dict[str, Any]:
    """Exact-match metrics of pass 2 on `config`'s evaluation problems, each group of
    problems scored with the z pass 1 chose for it, plus what pass 1 did.

    Besides the evaluator's metrics (`acc`, `acc_id`, ..., `val_loss`): `task_acc_<op>` (the
    accuracy on each operation's problems: the task is never told), `dispatch_acc` (the share
    of problems whose operation has an expert that were routed to it; `oracle`: 1 by
    construction) with `dispatch_acc_<op>`, and for `cem` the weights found, `cem_weights`
    ({task: weight}), and their few-shot score `cem_score`.
    """
    evaluation = config.evaluation
    if not isinstance(evaluation, ExactMatchEvaluatorConfig) or evaluation.source is None:
        raise ConfigError(
            f"neat eval --experts scores synthetic math answers, and this config's evaluation "
            f"is {evaluation.type!r}; set evaluation.type: exact_match with a synthetic_math "
            "data source"
        )
    experts = load_expert_set(folder, checkpoint, config.training.device)
    precision = resolve_precision(config.training.precision, experts.device)
    evaluator = exact_match_evaluator(
        evaluation, experts.tokenizer, experts.device, block_size=experts.block_size,
        precision=precision,
    )  # fmt: skip
    problems = list(dict.fromkeys(evaluator.problems))
    operation = evaluator.operation_of
    extra: dict[str, Any] = {"adapt": strategy}
    mixed: Z | None = None
    chosen: list[str | None]
    if strategy == "none":
        chosen = [None] * len(problems)
    elif strategy == "oracle":
        chosen = [operation[p] if operation[p] in experts.experts else None for p in problems]
    elif strategy in ("prompt", "classifier"):
        questions = [p.question for p in problems]
        chosen = route(experts, questions, strategy, precision=precision)
    elif strategy == "cem":
        few = few_shot_problems(evaluation.source, shots, exclude=evaluator.problems)
        weights, best, mixed = cem_mixture(
            experts, few, precision=precision, iterations=cem_iterations,
            population=cem_population, elite=max(1, cem_population // 4),
            seed=config.training.seed,
        )  # fmt: skip
        chosen = ["mix"] * len(problems)
        extra.update(cem_weights=weights, cem_score=best)
    else:
        raise ConfigError(f"--adapt {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    groups: dict[str | None, list[MathProblem]] = defaultdict(list)
    for problem, task in zip(problems, chosen, strict=True):
        groups[task].append(problem)
    results: list[tuple[MathProblem, bool]] = []
    losses: Losses = {}
    for task, group in groups.items():
        zs = mixed if task == "mix" else experts.experts[task] if task is not None else None
        with using_z(experts.model, zs):
            right, nats = evaluator.run(experts.model, group)
        results += right
        losses = _merge(losses, nats)
    metrics: dict[str, Any] = evaluator.tally(results, losses)
    metrics.update(_rates([(operation[p], ok) for p, ok in results], "task_acc_"))
    if strategy in ("oracle", "prompt", "classifier"):
        routed = [
            (operation[p], task == operation[p])
            for p, task in zip(problems, chosen, strict=True)
            if operation[p] in experts.experts
        ]
        if routed:
            metrics["dispatch_acc"] = sum(ok for _, ok in routed) / len(routed)
            metrics.update(_rates(routed, "dispatch_acc_"))
    metrics.update(extra, checkpoint=str(experts.checkpoint), experts=str(folder))
    return metrics


# -- neat generate --experts -----------------------------------------------------------------------


def stream_with_experts(
    checkpoint: Path,
    folder: Path,
    strategy: Strategy,
    prompt: str,
    *,
    examples: Path | None = None,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 1337,
    device: str = "auto",
    stream: bool = False,
    on_choice: Callable[[str], None] | None = None,
) -> Generator[str, None, None]:
    """`neat generate`'s pieces with pass 1 first: the prompt is routed to an expert (`prompt`,
    `classifier`) or the experts are mixed by CEM on `examples` (`cem`); `on_choice` hears
    what was chosen ("add", "base", "mix add=0.700,mul=0.300") before the first piece."""
    if strategy == "oracle":
        raise ConfigError(
            "--adapt oracle reads a problem's operation, which a free prompt does not have; "
            "use --adapt prompt, classifier or cem"
        )
    if strategy == "cem" and examples is None:
        raise ConfigError(
            "--adapt cem searches mixing weights on labelled examples; pass --examples "
            'FILE.jsonl (lines {"question": "3+4=", "answer": "7"})'
        )
    sampling: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    check_sampling(max_new_tokens=max_new_tokens, seed=seed, **sampling)
    shots = load_examples(examples) if examples is not None else []
    experts = load_expert_set(folder, checkpoint, device)
    zs: Z | None = None
    if strategy in ("prompt", "classifier"):
        task = route(experts, [prompt], strategy)[0]
        zs = experts.experts[task] if task is not None else None
        choice = task or "base"
    elif strategy == "cem":
        weights, _, zs = cem_mixture(experts, shots)
        choice = "mix " + ",".join(f"{t}={w:.3f}" for t, w in weights.items())
    else:
        choice = "base"
    if on_choice is not None:
        on_choice(choice)
    model, tokenizer = experts.model, experts.tokenizer
    ids = torch.tensor([tokenizer.encode(prompt) or prompt_separator(tokenizer)])
    ids = ids.to(experts.device)
    generator = torch.Generator(device=experts.device).manual_seed(seed)
    load_svf_z(model, zs if zs is not None else _ones(model))  # pass 2: kept for the stream
    tokens = iter_tokens(
        model, ids, max_new_tokens, block_size=experts.block_size, generator=generator,
        stream=stream, **sampling,
    )  # fmt: skip
    return text_pieces(TextStream(tokenizer), ids, tokens)


# -- the classification expert ---------------------------------------------------------------------


def train_classifier(
    model: nn.Module,
    tokenizer: ITokenizer,
    questions: Mapping[str, Sequence[str]],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    block_size: int,
    seed: int = 0,
    precision: str = "fp32",
) -> tuple[Z, DispatchPrompt, float]:
    """An SVF z trained so that `model` (SVF layers applied) completes the dispatch prompt of
    each task's questions with that task's label: Adam on z alone, cross-entropy on the
    label tokens only. Returns the z, the prompt it was trained on and the last batch's loss;
    the model is left at z = 1."""
    prompt = dispatch_prompt(tokenizer, list(questions))
    pairs: list[tuple[list[int], list[int]]] = []
    for k, texts in enumerate(questions.values()):
        for text in texts:
            encoded = prompt.pairs(tokenizer, text)
            if encoded is not None:
                pairs.append(encoded[k])
    if not pairs:
        raise DataError("no classifier training question can be encoded by the base tokenizer")
    device = next(model.parameters()).device
    params = svf_parameters(model)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.train(False)  # no dropout: the classifier is used in eval mode
    loss = torch.tensor(math.nan)
    try:
        for _ in range(steps):
            picks = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
            x, y = teacher_forced_batch([pairs[i] for i in picks], block_size)
            x, y = x.to(device), y.to(device)
            with autocast(precision, device):
                logits = model(x)["logits"]
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
        zs = svf_z(model)
    finally:
        model.train(was_training)
        load_svf_z(model, _ones(model))
    return zs, prompt, loss.item()
