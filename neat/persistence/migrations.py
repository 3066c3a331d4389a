"""Key layouts of older checkpoint formats, rewritten to today's model names on load.

A checkpoint's `format_version` says which layout its `model.safetensors` uses. Each
`KeyMigration` turns one older layout into the next version's; the loader chains them until
the current version, so a model renamed in code still loads the weights trained before the
rename. Several layouts may share a version: a migration's detector picks the one whose
tensor names fit. A layout no detector recognises is loaded as is, and the loader's name and
shape check then says which tensors do not fit.

Only model tensors are migrated. Optimizer state is keyed by parameter order, which a layout
change alters, so an old checkpoint loads weights only (evaluation, `model.init_from`).

An old checkpoint is still a checkpoint directory: a bare legacy `model.safetensors` needs a
state.json beside it (today's fields, `"format_version": 0`, the files' sha256s) to load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import structlog
import torch

from neat.errors import CheckpointError
from neat.persistence.manifest import FORMAT_VERSION, OLDEST_FORMAT_VERSION

__all__ = [
    "LEGACY_ENTROPY_LAYOUT",
    "MIGRATIONS",
    "KeyMigration",
    "TensorMigration",
    "find_migration",
    "migrate_state_dict",
    "migrator_for",
    "pending_migrations",
    "register_migration",
    "rename_keys",
]

log = structlog.get_logger(__name__)

Tensors = dict[str, torch.Tensor]
TensorMigration = Callable[[Tensors], Tensors]
RenameRule = tuple[str, str]  # (regex matched against the whole key, replacement template)


@dataclass(frozen=True)
class KeyMigration:
    """Rewrites the tensors of one layout of `from_version` into the `to_version` layout.

    `detect` sees only tensor names, so a checkpoint can be checked without reading its data;
    `apply` must be pure (the input dict is not modified) and may rename, split or fuse.
    """

    name: str
    from_version: int
    to_version: int
    description: str
    detect: Callable[[Collection[str]], bool]
    apply: Callable[[Mapping[str, torch.Tensor]], Tensors]


MIGRATIONS: list[KeyMigration] = []


def register_migration(migration: KeyMigration) -> KeyMigration:
    """Add `migration` to the registry after checking it moves forward within known versions."""
    if not OLDEST_FORMAT_VERSION <= migration.from_version < migration.to_version:
        raise ValueError(f"migration {migration.name!r} must go from an older to a newer version")
    if migration.to_version > FORMAT_VERSION:
        raise ValueError(f"migration {migration.name!r} targets an unknown version")
    if any(m.name == migration.name for m in MIGRATIONS):
        raise ValueError(f"a migration named {migration.name!r} is already registered")
    MIGRATIONS.append(migration)
    return migration


def find_migration(keys: Collection[str], version: int) -> KeyMigration | None:
    """The registered migration from `version` whose detector recognises `keys`."""
    return next(
        (m for m in MIGRATIONS if m.from_version == version and m.detect(keys)),
        None,
    )


def migrate_state_dict(
    tensors: Mapping[str, torch.Tensor], version: int
) -> tuple[Tensors, list[str]]:
    """`tensors` of a checkpoint of format `version` under today's names, and the names of
    the migrations applied in order. Stops early (returning what it has) at a layout no
    migration recognises, leaving the mismatch for the loader's check to explain."""
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"the checkpoint was written by a newer neat (format_version {version}; this neat "
            f"reads up to {FORMAT_VERSION}): upgrade neat to load it"
        )
    migrated, applied = dict(tensors), []
    while version < FORMAT_VERSION:
        migration = find_migration(migrated.keys(), version)
        if migration is None:
            break
        migrated = migration.apply(migrated)
        applied.append(migration.name)
        version = migration.to_version
    return migrated, applied


def pending_migrations(shapes: Mapping[str, Sequence[int]], version: int) -> list[str]:
    """The migrations loading would apply, found from tensor shapes alone: the migrations
    run on meta tensors, so no data is read (what `neat checkpoints inspect` reports)."""
    if version >= FORMAT_VERSION:
        return []
    empty = {name: torch.empty(tuple(shape), device="meta") for name, shape in shapes.items()}
    return migrate_state_dict(empty, version)[1]


def migrator_for(version: int, source: str) -> TensorMigration | None:
    """The rewrite `load_model` applies to a checkpoint of `version` (None when current);
    it logs which migrations ran, or that none recognised the layout."""
    if version == FORMAT_VERSION:
        return None

    def migrate(tensors: Tensors) -> Tensors:
        migrated, applied = migrate_state_dict(tensors, version)
        if applied:
            log.info(
                "checkpoint_migrated",
                path=source,
                from_version=version,
                to_version=FORMAT_VERSION,
                migrations=applied,
            )
        else:
            log.warning("checkpoint_layout_unrecognised", path=source, format_version=version)
        return migrated

    return migrate


def rename_keys(tensors: Mapping[str, torch.Tensor], rules: Sequence[RenameRule]) -> Tensors:
    """Each key renamed by the first rule whose pattern matches it whole; others kept."""
    compiled = [(re.compile(pattern), template) for pattern, template in rules]
    renamed: Tensors = {}
    sources: dict[str, str] = {}
    for key, tensor in tensors.items():
        new = next((rx.sub(t, key) for rx, t in compiled if rx.fullmatch(key)), key)
        if new in sources:
            raise CheckpointError(
                f"checkpoint tensors {sources[new]!r} and {key!r} would both become {new!r}"
            )
        renamed[new], sources[new] = tensor, key
    return renamed


# -- format 0: the legacy entropy-model layout -----------------------------------------------------
#
#   byte_embeddings.weight                              -> wte.weight
#   position_embeddings.weight                          -> pos.wpe.weight
#   transformer.layers.N.attention_norm.{weight,bias}   -> blocks.N.ln_1.*
#   transformer.layers.N.attention.{q,k,v}_proj.*       -> blocks.N.attn.c_attn.* (fused q|k|v)
#   transformer.layers.N.attention.out_proj.*           -> blocks.N.attn.c_proj.*
#   transformer.layers.N.ffn_norm.*                     -> blocks.N.ln_2.*
#   transformer.layers.N.feed_forward.fc_in.*           -> blocks.N.mlp.c_fc.*
#   transformer.layers.N.feed_forward.fc_out.*          -> blocks.N.mlp.c_proj.*
#   transformer.norm.*                                  -> ln_f.*
#   output.weight (tied copy, or absent)                -> lm_head.weight, tied to wte.weight

_LAYER = r"transformer\.layers\.(\d+)\."
_PARAM = r"(weight|bias)"
_LEGACY_RENAMES: tuple[RenameRule, ...] = (
    (r"byte_embeddings\.weight", "wte.weight"),
    (r"position_embeddings\.weight", "pos.wpe.weight"),
    (rf"{_LAYER}attention_norm\.{_PARAM}", r"blocks.\1.ln_1.\2"),
    (rf"{_LAYER}attention\.out_proj\.{_PARAM}", r"blocks.\1.attn.c_proj.\2"),
    (rf"{_LAYER}ffn_norm\.{_PARAM}", r"blocks.\1.ln_2.\2"),
    (rf"{_LAYER}feed_forward\.fc_in\.{_PARAM}", r"blocks.\1.mlp.c_fc.\2"),
    (rf"{_LAYER}feed_forward\.fc_out\.{_PARAM}", r"blocks.\1.mlp.c_proj.\2"),
    (rf"transformer\.norm\.{_PARAM}", r"ln_f.\1"),
)
_LEGACY_QKV = re.compile(rf"{_LAYER}attention\.([qkv])_proj\.{_PARAM}")
_LEGACY_HEAD = "output.weight"


def _detect_legacy_entropy(keys: Collection[str]) -> bool:
    layers = any(k.startswith("transformer.layers.") for k in keys)
    return layers and "byte_embeddings.weight" in keys


def _fuse_legacy_qkv(tensors: Mapping[str, torch.Tensor]) -> Tensors:
    """Separate q, k, v projections -> one c_attn, rows stacked q|k|v as CausalSelfAttention
    splits them. An incomplete triple is left as is, for the loader to report."""
    parts: dict[tuple[str, str], dict[str, str]] = {}
    for key in tensors:
        match = _LEGACY_QKV.fullmatch(key)
        if match:
            layer, which, param = match.groups()
            parts.setdefault((layer, param), {})[which] = key
    fused = dict(tensors)
    for (layer, param), keys in parts.items():
        if set(keys) == {"q", "k", "v"}:
            fused[f"blocks.{layer}.attn.c_attn.{param}"] = torch.cat(
                [fused.pop(keys[w]) for w in "qkv"], dim=0
            )
    return fused


def _tie_legacy_head(tensors: Mapping[str, torch.Tensor]) -> Tensors:
    """Today's GPT ties lm_head to wte: a legacy head must be absent or a copy of the
    embeddings, otherwise loading would silently change the model's predictions."""
    tied = dict(tensors)
    head = tied.pop(_LEGACY_HEAD, None)
    embeddings = tied.get("wte.weight")
    if embeddings is None:  # not this layout after all: the loader names what is missing
        return dict(tensors)
    if head is not None and head.device.type != "meta" and not torch.equal(head, embeddings):
        raise CheckpointError(
            f"the legacy checkpoint's {_LEGACY_HEAD!r} differs from its byte embeddings, but "
            "today's GPT ties the output head to the token embeddings: it cannot be loaded "
            "without changing the model's predictions"
        )
    tied["lm_head.weight"] = embeddings
    return tied


def _migrate_legacy_entropy(tensors: Mapping[str, torch.Tensor]) -> Tensors:
    return _tie_legacy_head(_fuse_legacy_qkv(rename_keys(tensors, _LEGACY_RENAMES)))


LEGACY_ENTROPY_LAYOUT = register_migration(
    KeyMigration(
        name="legacy_entropy_layout",
        from_version=0,
        to_version=1,
        description="byte_embeddings / position_embeddings / transformer.layers.N.* with "
        "separate q, k, v projections -> wte / pos.wpe / blocks.N.* with fused c_attn",
        detect=_detect_legacy_entropy,
        apply=_migrate_legacy_entropy,
    )
)
