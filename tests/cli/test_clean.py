"""`neat clean` through the CLI: dry run lists, a real run removes only leftovers."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from neat.cli import cli


def test_clean_dry_run_then_clean(tiny_config: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    assert (
        runner.invoke(cli, ["train", "-c", str(tiny_config), "--run-dir", str(run)]).exit_code == 0
    )
    partial = run / "checkpoints" / "step_99"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"y" * 50)

    dry = runner.invoke(cli, ["clean", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 0
    assert "would remove" in dry.stdout and "step_99" in dry.stdout and "__pycache__" in dry.stdout
    assert partial.exists()

    done = runner.invoke(cli, ["clean", str(tmp_path)])
    assert done.exit_code == 0 and "freed 150 B" in done.stdout
    assert not partial.exists() and not (tmp_path / "pkg" / "__pycache__").exists()
    assert (run / "checkpoints" / "step_30" / "state.json").is_file()
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()

    missing = runner.invoke(cli, ["clean", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
