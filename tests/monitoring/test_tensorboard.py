"""`monitoring.monitors: [..., tensorboard]` and `evaluation.sample`: event files that
TensorBoard's own reader parses back to the logged values, and a sample per evaluation in
metrics.jsonl, the event files and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli

pytest.importorskip("tensorboard")


def test_event_files_hold_every_metric_the_config_and_the_samples(
    tiny_config: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = ["train", "-c", str(tiny_config), "--run-dir", str(run),
            "--set", "training.max_steps=20",
            "--set", "monitoring.monitors=[console, metrics, tensorboard]",
            "--set", "evaluation.sample={prompt: 'ROMEO:', max_new_tokens: 12}"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert losses == pytest.approx({r["step"]: r["loss"] for r in rows if r["event"] == "train"})
    val = {e.step: e.value for e in events.Scalars("eval/val_loss")}
    assert val == pytest.approx({r["step"]: r["val_loss"] for r in rows if r["event"] == "eval"})
    assert {"train/lr", "train/tokens_per_s", "train/grad_norm"} <= set(events.Tags()["scalars"])

    texts = {tag: events.Tensors(tag) for tag in events.Tags()["tensors"]}
    config = texts["config/text_summary"][0].tensor_proto.string_val[0].decode()
    assert "n_layer: 2" in config
    samples = [r for r in rows if r["event"] == "sample"]
    assert [r["step"] for r in samples] == [10, 20]
    assert all(r["text"].startswith("ROMEO:") and len(r["text"]) == 18 for r in samples)
    written = [t.tensor_proto.string_val[0].decode() for t in texts["sample/text_summary"]]
    assert [w.strip("`\n") for w in written] == [r["text"] for r in samples]


def test_the_sample_does_not_change_the_run(tiny_config: Path, tmp_path: Path) -> None:
    """Sampling draws from its own generator: the losses are those of a run without it."""
    losses = []
    for name, extra in (("plain", []), ("sampled", ["--set", "evaluation.sample={}"])):
        run = tmp_path / name
        args = ["train", "-c", str(tiny_config), "--run-dir", str(run),
                "--set", "training.max_steps=20", *extra]  # fmt: skip
        assert CliRunner().invoke(cli, args).exit_code == 0
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in rows if r["event"] == "train"])
    assert losses[0] == losses[1]


def test_naming_tensorboard_without_the_package_is_one_clear_error(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    args = ["train", "-c", str(tiny_config), "--run-dir", str(tmp_path / "run"),
            "--set", "monitoring.monitors=[console, tensorboard]"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "pip install 'neat[tensorboard]'" in result.output
