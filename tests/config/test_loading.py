"""Config files, overrides, migrations and the error messages a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neat.config import (
    CURRENT_VERSION,
    MIGRATIONS,
    ExperimentConfig,
    OptimizerConfig,
    dump_config,
    known_types,
    load_config,
    register_component,
)
from neat.config.example import EXAMPLE_CONFIG
from neat.config.loader import parse_yaml
from neat.errors import ConfigError
from neat.optimization.adamw import AdamWConfig

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_json_toml_give_the_same_config(tmp_path: Path) -> None:
    yaml_cfg = load_config(
        write(tmp_path / "a.yaml", "data: {path: c.txt}\ntraining: {max_steps: 7}\n")
    )
    json_cfg = load_config(
        write(
            tmp_path / "a.json",
            json.dumps({"data": {"path": "c.txt"}, "training": {"max_steps": 7}}),
        )
    )
    toml_cfg = load_config(
        write(tmp_path / "a.toml", '[data]\npath = "c.txt"\n[training]\nmax_steps = 7\n')
    )
    assert yaml_cfg == json_cfg == toml_cfg
    assert yaml_cfg.training.max_steps == 7


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "exp"
    sub.mkdir()
    cfg = load_config(write(sub / "c.yaml", "data: {path: ../corpus.txt}\n"))
    assert cfg.data.sources[0].path == str(tmp_path / "corpus.txt")


def test_overrides_scalars_lists_and_subtrees(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: {path: c.txt}\nmodel: {n_layer: 6, dropout: 0.1}\n")
    cfg = load_config(
        path,
        [
            "training.max_steps=11",
            "optimization.lr=3e-4",
            "training.compile=true",
            "monitoring.monitors=[metrics]",
            "model={type: gpt, n_layer: 2}",
        ],
    )
    assert cfg.training.max_steps == 11
    assert cfg.optimization.lr == pytest.approx(3e-4)
    assert cfg.training.compile is True
    assert [m.type for m in cfg.monitoring.monitors] == ["metrics"]
    assert cfg.model.n_layer == 2
    assert cfg.model.dropout == 0.0  # the subtree replaced the file's model section


def test_unknown_key_names_the_path_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: {path: c.txt}\noptimization: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "optimization.lrr: unknown key (did you mean 'optimization.lr'?)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(path, ["optimization={}", "training.lrr=1"])
    assert "training.lrr" in str(err.value) and "optimization.lr" in str(err.value)


def test_wrong_type_and_unknown_component_type(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: {path: c.txt}\n")
    with pytest.raises(ConfigError, match=r"training\.batch_size: .*integer.*'ten'"):
        load_config(path, ["training.batch_size=ten"])
    with pytest.raises(
        ConfigError, match="unknown model type 'mamba'; known types: bi_encoder, blt, gpt"
    ):
        load_config(path, ["model.type=mamba"])


def test_duplicate_keys_and_python_tags_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate key 'training'"):
        load_config(write(tmp_path / "d.yaml", "training: {}\ntraining: {}\ndata: {path: x}\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_yaml("a: !!python/object/apply:os.system ['true']")


def test_missing_file_and_bad_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path / "c.yaml", "data: {path: c.txt}\ntraining: {max_steps: 5}\n")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["training.max_steps"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(path, ["training.max_steps.x=1"])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.yaml", "data: {path: c.txt}\nname: rt\n"))
    again = load_config(write(tmp_path / "resolved.yaml", dump_config(cfg)))
    assert again == cfg


def test_version_migration_hook_runs_and_newer_versions_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rename_lr(raw: dict[str, object]) -> dict[str, object]:
        opt = dict(raw.get("optimization", {}))  # type: ignore[call-overload]
        if "learning_rate" in opt:
            opt["lr"] = opt.pop("learning_rate")
        return {**raw, "optimization": opt}

    monkeypatch.setattr("neat.config.migrations.CURRENT_VERSION", CURRENT_VERSION + 1)
    monkeypatch.setitem(MIGRATIONS, CURRENT_VERSION, rename_lr)
    old = write(
        tmp_path / "old.yaml",
        f"version: {CURRENT_VERSION}\ndata: {{path: c.txt}}\n"
        "optimization: {learning_rate: 0.01}\n",
    )
    cfg = load_config(old)
    assert cfg.optimization.lr == 0.01
    assert cfg.version == CURRENT_VERSION + 1
    with pytest.raises(ConfigError, match="newer than this neat supports"):
        load_config(old, [f"version={CURRENT_VERSION + 5}"])


def test_registry_accepts_a_plugin_type() -> None:
    class TinyOptimizer(OptimizerConfig):
        type: str = "tiny-opt"
        lr: float = 0.5

    register_component("optimization", TinyOptimizer, lambda cfg, ctx: None)
    cfg = load_config(raw={"data": {"path": "x"}, "optimization": {"type": "tiny-opt"}})
    assert isinstance(cfg.optimization, TinyOptimizer)
    assert "tiny-opt" in known_types("optimization")
    assert isinstance(load_config(raw={"data": {"path": "x"}}).optimization, AdamWConfig)


def test_shipped_examples_and_init_template_validate(tmp_path: Path) -> None:
    for name in ["shakespeare_char_cpu.yaml", "shakespeare_char.yaml"]:
        cfg = load_config(REPO / "examples" / name)
        assert Path(cfg.data.sources[0].path).is_file()
    cfg = load_config(write(tmp_path / "neat.yaml", EXAMPLE_CONFIG))
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.data.sources[0].path == str(tmp_path / "corpus.txt")
