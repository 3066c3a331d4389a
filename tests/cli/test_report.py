"""`neat report` on real tiny runs: inline PNGs that open and are not blank, one PNG file per
image, no network, runs in progress, comparisons with config differences, ablations."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from neat.cli import cli
from neat.evaluation.ablation_table import summary
from tests.conftest import SHAKESPEARE, TINY_CONFIG


class _Page(HTMLParser):
    """The img srcs and every src/href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("src", "href") and value is not None:
                self.links.append(value)
                if tag == "img":
                    self.images.append(value)


def _parse(path: Path) -> _Page:
    parser = _Page()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished 20-step runs differing in learning rate."""
    root = tmp_path_factory.mktemp("report")
    (root / "corpus.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000])
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(max_steps=20), encoding="utf-8")
    out = []
    for name, lr in (("a", "1.0e-3"), ("b", "3.0e-3")):
        run = root / name
        args = ["train", "-c", str(config), "--run-dir", str(run), "--set", f"optimization.lr={lr}"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        out.append(run)
    return out[0], out[1]


def _report(tmp_path: Path, *paths: Path) -> Path:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", *map(str, paths), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_finished_run_has_real_inline_plots_and_needs_no_network(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    out = _report(tmp_path, runs[0])
    page = _parse(out)
    assert page.images
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
        assert len(image.getcolors(maxcolors=1 << 16) or range(9)) > 8
    assert len(page.images) == len(list((tmp_path / "report_plots").glob("*.png")))
    assert not [link for link in page.links if link.startswith(("http://", "https://"))]
    text = out.read_text(encoding="utf-8")
    assert "completed" in text and "step_20" in text and "<details>" in text


def test_a_run_in_progress_says_how_far_it_got(runs: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "partial"
    shutil.copytree(runs[0], copy, ignore=shutil.ignore_patterns(".lock"))
    lines = (copy / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if json.loads(line).get("event") != "run_end"]
    kept = [line for line in kept if json.loads(line).get("step", 0) <= 12]
    (copy / "metrics.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    assert "in progress at step 12 of 20" in _report(tmp_path, copy).read_text(encoding="utf-8")


def test_two_runs_are_overlaid_and_their_config_difference_listed(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    text = _report(tmp_path, *runs).read_text(encoding="utf-8")
    assert "Comparison" in text and "optimization.lr" in text
    plots = tmp_path / "report_plots"
    assert (plots / "compare_train_loss.png").is_file()
    assert (plots / "compare_val_loss.png").is_file()


def test_an_ablation_has_a_bar_chart_per_main_metric(tmp_path: Path) -> None:
    rows = [
        {
            "variant": v,
            "seed": s,
            "run": f"{v}-s{s}",
            "metrics": {"acc": a + s / 50, "val_loss": 2 - a},
        }
        for v, a in (("baseline", 0.2), ("blt", 0.4))
        for s in range(3)
    ]
    folder = tmp_path / "ablation"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary(rows)), encoding="utf-8")
    (folder / "ablation.jsonl").write_text("\n".join(map(json.dumps, rows)), encoding="utf-8")
    out = _report(tmp_path, folder)
    assert len(_parse(out).images) == 2
    assert {p.name for p in (tmp_path / "report_plots").iterdir()} == {
        "01-ablation-acc.png",
        "01-ablation-val_loss.png",
    }
    assert "Versus baseline" in out.read_text(encoding="utf-8")


def test_a_path_that_is_neither_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert str(tmp_path) in result.output and "metrics.jsonl" in result.output


def test_a_sweep_in_progress_shows_its_trials_and_the_best_so_far(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "sweep"
    asked = {
        "strategy": "bayes",
        "trials": 4,
        "metric": "val_loss",
        "direction": "minimize",
        "space": {"optimization.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}},
    }
    trials = []
    for number, (run, state) in enumerate(zip(runs, ("complete", "running"), strict=True)):
        shutil.copytree(
            run, folder / "trials" / f"t{number}", ignore=shutil.ignore_patterns(".lock")
        )
        lr = yaml.safe_load((run / "config.yaml").read_text())["optimization"]["lr"]
        value = 2.5 if state == "complete" else None
        trials.append({"number": number, "params": {"optimization.lr": lr}, "value": value,
                       "state": state, "run_dir": f"/elsewhere/trials/t{number}"})  # fmt: skip
    (folder / "sweep.json").write_text(json.dumps(asked), encoding="utf-8")
    (folder / "trials.jsonl").write_text("\n".join(map(json.dumps, trials)), encoding="utf-8")

    out = _report(tmp_path, folder)
    text = out.read_text(encoding="utf-8")
    assert "1 of 4 done" in text and "<td>running</td>" in text
    assert "trial 0: val_loss 2.5 with optimization.lr = 0.001" in text
    names = {p.name for p in (tmp_path / "report_plots").iterdir()}
    # the trial dirs were found beside sweep.json, though trials.jsonl names another place
    assert names == {
        "01-sweep-trials.png",
        "01-sweep-by_optimization_lr.png",
        "01-sweep-compare_train_loss.png",
        "01-sweep-compare_val_loss.png",
    }
    assert len(_parse(out).images) == 4
