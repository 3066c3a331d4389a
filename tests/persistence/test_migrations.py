"""Checkpoints of older key layouts load into today's model: a real trained GPT checkpoint is
rewritten into the legacy entropy-model layout (format 0) and must load back exactly."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import structlog
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from neat.cli import cli
from neat.config import load_config
from neat.data import load_tokenizer
from neat.di.factories import make_model
from neat.errors import CheckpointError
from neat.inference import load_for_inference
from neat.persistence import FORMAT_VERSION, Checkpointer, migrate_state_dict, pending_migrations
from neat.persistence import migrations as registry
from neat.persistence.migrations import KeyMigration, register_migration, rename_keys

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
name: tiny
model: {type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.1}
data: {type: text, path: corpus.txt, tokenizer: {type: char}, val_fraction: 0.1}
optimization: {lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 5, decay_steps: 100}
training: {max_steps: 10, batch_size: 4, seed: 7, device: cpu}
evaluation: {interval: 10, batches: 2}
monitoring: {log_interval: 5}
checkpoint: {interval: 10, keep_last: 1}
"""
N_LAYER = 2


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config, its corpus and a 10-step run of a 2-layer GPT, trained once per module."""
    root = tmp_path_factory.mktemp("migrations")
    text = (REPO / "examples" / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    (root / "corpus.txt").write_text(text[:60_000], encoding="utf-8")
    (root / "tiny.yaml").write_text(CONFIG, encoding="utf-8")
    code, _, err = invoke("train", "-c", str(root / "tiny.yaml"), "--run-dir", str(root / "run"))
    assert code == 0, err
    return root


@pytest.fixture(scope="module")
def current(workdir: Path) -> Path:
    return workdir / "run" / "checkpoints" / "step_10"


def _legacy_name(name: str) -> str:
    """Today's tensor name -> the legacy entropy-model name (written independently of the
    migration's own rename table, so the test checks it rather than repeating it)."""
    fixed = {
        "wte.weight": "byte_embeddings.weight",
        "pos.wpe.weight": "position_embeddings.weight",
        "ln_f.weight": "transformer.norm.weight",
        "ln_f.bias": "transformer.norm.bias",
    }
    if name in fixed:
        return fixed[name]
    layer, rest = re.fullmatch(r"blocks\.(\d+)\.(.+)", name).groups()  # type: ignore[union-attr]
    part, param = rest.rsplit(".", 1)
    legacy_part = {
        "ln_1": "attention_norm",
        "attn.c_proj": "attention.out_proj",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "feed_forward.fc_in",
        "mlp.c_proj": "feed_forward.fc_out",
    }[part]
    return f"transformer.layers.{layer}.{legacy_part}.{param}"


def to_legacy(tensors: dict[str, torch.Tensor], head: bool = True) -> dict[str, torch.Tensor]:
    """The inverse of the migration: split c_attn into q/k/v, rename, add a tied head copy."""
    legacy = {}
    for name, tensor in tensors.items():
        fused = re.fullmatch(r"blocks\.(\d+)\.attn\.c_attn\.(weight|bias)", name)
        if fused:
            layer, param = fused.groups()
            for which, part in zip("qkv", tensor.chunk(3, dim=0), strict=True):
                legacy[f"transformer.layers.{layer}.attention.{which}_proj.{param}"] = part.clone()
        else:
            legacy[_legacy_name(name)] = tensor
    if head:
        legacy["output.weight"] = tensors["wte.weight"].clone()
    return legacy


def write_checkpoint(
    source: Path, target: Path, tensors: dict[str, torch.Tensor], version: int
) -> Path:
    """A copy of `source` with `tensors` as its model and `version` in a state.json whose
    sha256s are recomputed, so the integrity check passes and only the layout differs."""
    shutil.copytree(source, target)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    meta = json.loads((source / "state.json").read_text())
    meta["format_version"] = version
    meta.pop("state_sha256", None)  # older formats predate state.json's own digest
    meta["tensor_aliases"] = {}
    meta["files"] = {
        name: hashlib.sha256((target / name).read_bytes()).hexdigest() for name in meta["files"]
    }
    (target / "state.json").write_text(json.dumps(meta))
    return target


@pytest.fixture(scope="module")
def legacy(current: Path, workdir: Path) -> Path:
    tensors = to_legacy(load_file(str(current / "model.safetensors")))
    return write_checkpoint(current, workdir / "legacy" / "checkpoints" / "step_10", tensors, 0)


def fresh_model(workdir: Path) -> torch.nn.Module:
    config = load_config(workdir / "tiny.yaml")
    tokenizer = load_tokenizer(workdir / "run" / "tokenizer.json")
    return make_model(config.model, config.training, tokenizer, init_from=False).eval()


def logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.arange(20).remainder(50).unsqueeze(0)
    with torch.no_grad():
        out: torch.Tensor = model(ids)["logits"]
    return out


def test_legacy_checkpoint_loads_identical_weights_and_logs_the_migration(
    workdir: Path, current: Path, legacy: Path
) -> None:
    expected, migrated = fresh_model(workdir), fresh_model(workdir)
    Checkpointer(current.parent).load(current, expected)
    with structlog.testing.capture_logs() as logs:
        state = Checkpointer(legacy.parent).load(legacy, migrated)
    assert state.step == 10
    [event] = [e for e in logs if e["event"] == "checkpoint_migrated"]
    assert event["migrations"] == ["legacy_entropy_layout"]
    assert (event["from_version"], event["to_version"]) == (0, FORMAT_VERSION)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(migrated.state_dict()[name], tensor), name
    assert migrated.lm_head.weight is migrated.wte.weight  # still tied
    assert torch.equal(logits(migrated), logits(expected))


def test_inference_loader_and_init_from_migrate(workdir: Path, current: Path, legacy: Path) -> None:
    model, _, _ = load_for_inference(legacy, device="cpu")
    expected, _, _ = load_for_inference(current, device="cpu")
    assert torch.equal(logits(model.eval()), logits(expected.eval()))

    config = load_config(workdir / "tiny.yaml", [f"model.init_from={legacy}"])
    tokenizer = load_tokenizer(workdir / "run" / "tokenizer.json")
    with structlog.testing.capture_logs() as logs:
        initialised = make_model(config.model, config.training, tokenizer).eval()
    assert any(e["event"] == "checkpoint_migrated" for e in logs)
    assert torch.equal(logits(initialised), logits(expected))


def test_eval_cli_on_legacy_checkpoint_matches_the_original(
    workdir: Path, current: Path, legacy: Path
) -> None:
    config = str(workdir / "tiny.yaml")
    code, out, err = invoke(  # the migration is logged at info level
        "--log-level", "info", "eval", "-c", config, "--checkpoint", str(legacy.parent), "--json"
    )
    assert code == 0, err
    assert re.search(r"checkpoint_migrated .*migrations=\['legacy_entropy_layout'\]", err)
    code, original, err = invoke("eval", "-c", config, "--checkpoint", str(current), "--json")
    assert code == 0, err
    assert json.loads(out)["val_loss"] == pytest.approx(json.loads(original)["val_loss"])


def test_inspect_reports_the_pending_migration(legacy: Path) -> None:
    code, out, err = invoke("checkpoints", "inspect", str(legacy.parents[1]))
    assert code == 0, err
    assert re.search(r"format\s+0 \(current 1; loading migrates it: legacy_entropy_layout\)", out)
    assert re.search(r"byte_embeddings\.weight\s+\(\d+, 32\)\s+float32", out)
    assert "transformer.layers.1.attention.q_proj.weight" in out

    code, out, err = invoke("checkpoints", "inspect", str(legacy), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["format_version"], info["migrations"]) == (0, ["legacy_entropy_layout"])
    shapes = {t["name"]: t["shape"] for t in info["tensors"]}
    assert shapes["transformer.layers.0.attention.k_proj.weight"] == [32, 32]
    assert info["model_config"]["n_layer"] == N_LAYER and "val_loss" in info["metrics"]


def test_legacy_optimizer_state_is_refused(workdir: Path, legacy: Path) -> None:
    model = fresh_model(workdir)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(CheckpointError, match=r"older format_version 0.*without an optimizer"):
        Checkpointer(legacy.parent).load(legacy, model, optimizer)


def test_newer_format_fails_clearly(workdir: Path, current: Path, tmp_path: Path) -> None:
    tensors = load_file(str(current / "model.safetensors"))
    newer = write_checkpoint(current, tmp_path / "step_10", tensors, FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=r"written by a newer neat.*upgrade neat"):
        Checkpointer(newer.parent).load(newer, fresh_model(workdir))
    with pytest.raises(CheckpointError, match="newer neat"):
        migrate_state_dict(tensors, FORMAT_VERSION + 1)


def test_unknown_old_layout_gives_the_mismatch_error(
    workdir: Path, current: Path, tmp_path: Path
) -> None:
    tensors = load_file(str(current / "model.safetensors"))
    tensors["embed.weight"] = tensors.pop("wte.weight")
    unknown = write_checkpoint(current, tmp_path / "step_10", tensors, 0)
    model = fresh_model(workdir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(CheckpointError, match=r"lacks 2 tensor\(s\).*'wte.weight'"),
    ):
        Checkpointer(unknown.parent).load(unknown, model)
    assert any(e["event"] == "checkpoint_layout_unrecognised" for e in logs)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def _legacy_names(n_layer: int = 1, bias: bool = True) -> dict[str, torch.Tensor]:
    params = ["weight", "bias"] if bias else ["weight"]
    names = ["byte_embeddings.weight", "position_embeddings.weight"]
    names += [f"transformer.norm.{p}" for p in params]
    parts = ["attention_norm", "ffn_norm", "feed_forward.fc_in", "feed_forward.fc_out"]
    parts += ["attention.out_proj", "attention.q_proj", "attention.k_proj", "attention.v_proj"]
    names += [
        f"transformer.layers.{i}.{s}.{p}" for i in range(n_layer) for s in parts for p in params
    ]
    return {name: torch.full((2, 3), float(i)) for i, name in enumerate(names)}


@pytest.mark.parametrize("bias", [True, False])
def test_legacy_names_map_onto_todays_gpt(bias: bool) -> None:
    legacy = _legacy_names(n_layer=2, bias=bias)
    migrated, applied = migrate_state_dict(legacy, 0)
    assert applied == ["legacy_entropy_layout"]
    params = ["weight", "bias"] if bias else ["weight"]
    parts = ["ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj", "attn.c_proj", "attn.c_attn"]
    expected = {"wte.weight", "pos.wpe.weight", "lm_head.weight"} | {f"ln_f.{p}" for p in params}
    expected |= {f"blocks.{i}.{s}.{p}" for i in range(2) for s in parts for p in params}
    assert set(migrated) == expected
    assert migrated["lm_head.weight"] is migrated["wte.weight"]
    qkv = [legacy[f"transformer.layers.1.attention.{w}_proj.weight"] for w in "qkv"]
    assert torch.equal(migrated["blocks.1.attn.c_attn.weight"], torch.cat(qkv))
    assert set(legacy) == set(_legacy_names(n_layer=2, bias=bias))  # input left untouched


def test_untied_legacy_head_is_refused() -> None:
    legacy = _legacy_names()
    legacy["output.weight"] = legacy["byte_embeddings.weight"] + 1
    with pytest.raises(CheckpointError, match="differs from its byte embeddings"):
        migrate_state_dict(legacy, 0)


def test_incomplete_qkv_is_left_for_the_loader_to_report() -> None:
    legacy = _legacy_names()
    del legacy["transformer.layers.0.attention.v_proj.weight"]
    migrated, _ = migrate_state_dict(legacy, 0)
    assert "transformer.layers.0.attention.q_proj.weight" in migrated
    assert "blocks.0.attn.c_attn.weight" not in migrated


def test_pending_migrations_need_only_shapes() -> None:
    shapes = {name: list(t.shape) for name, t in _legacy_names().items()}
    assert pending_migrations(shapes, 0) == ["legacy_entropy_layout"]
    assert pending_migrations({"wte.weight": [4, 2]}, 0) == []
    assert pending_migrations(shapes, FORMAT_VERSION) == []


def test_every_older_version_has_a_migration() -> None:
    for version in range(registry.OLDEST_FORMAT_VERSION, FORMAT_VERSION):
        assert any(m.from_version == version for m in registry.MIGRATIONS), version


def test_migrations_chain_until_the_current_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MIGRATIONS", [])
    monkeypatch.setattr(registry, "FORMAT_VERSION", 2)

    def step(old: str, new: str, since: int) -> KeyMigration:
        return KeyMigration(
            name=f"{old}_to_{new}",
            from_version=since,
            to_version=since + 1,
            description="test",
            detect=lambda keys: old in keys,
            apply=lambda tensors: rename_keys(tensors, [(re.escape(old), new)]),
        )

    register_migration(step("a", "b", 0))
    register_migration(step("b", "c", 1))
    migrated, applied = migrate_state_dict({"a": torch.zeros(1)}, 0)
    assert (list(migrated), applied) == (["c"], ["a_to_b", "b_to_c"])
    assert migrate_state_dict({"b": torch.zeros(1)}, 1)[1] == ["b_to_c"]
    with pytest.raises(ValueError, match="already registered"):
        register_migration(step("a", "b", 0))
    with pytest.raises(ValueError, match="unknown version"):
        register_migration(step("x", "y", 2))


def test_rename_refuses_two_keys_becoming_one() -> None:
    tensors = {"a.weight": torch.zeros(1), "b.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=re.escape("would both become 'c.weight'")):
        rename_keys(tensors, [(r"(a|b)\.weight", "c.weight")])
