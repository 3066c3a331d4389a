"""Reading config files, applying `--set` overrides and turning validation errors into advice."""

from __future__ import annotations

import codecs
import difflib
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from neat.config.base import CommandLineStr, ComponentConfig, Section
from neat.config.data import DataConfig
from neat.config.registry import config_class, default_type, known_types
from neat.config.schema import ExperimentConfig
from neat.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a .yaml/.yml, .json or .toml file into a raw dict."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = _read_text(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            raw = json.loads(text, object_pairs_hook=_unique_json_keys(path))
        elif suffix == ".toml":
            import tomllib  # here, not at the top: most configs are YAML

            raw = tomllib.loads(text)
        else:
            raw = parse_yaml(text, str(path))
    except ValueError as exc:  # json.JSONDecodeError, tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


# Editors on Windows save "Unicode" as UTF-16 with a byte order mark: decoding it is what the
# user meant. Any other undecodable file is binary or in a legacy encoding.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, or UTF-16/32 with a byte order mark; anything else is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text config file (byte {exc.start} is not valid {encoding}); "
            "save it as UTF-8 YAML, JSON or TOML"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text config file (it holds NUL bytes); save it as UTF-8")
    return text


def _unique_json_keys(path: Path) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An object hook that refuses repeated keys, as YAML and TOML do (json keeps the last)."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ConfigError(f"{path}: duplicate key {key!r}; keep only one of them")
            result[key] = value
        return result

    return build


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value`; the value is parsed as YAML (scalars, lists, `{...}` subtrees).

    A number picks an item of a list (`data.sources.0.path=...`; the list's length appends).
    Strings of the value are marked as typed on the command line, so that a relative path in
    them means the working directory rather than the config file's folder.
    """
    key, sep, value_text = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE with a dotted KEY")
    value = _typed_here(parse_yaml(value_text, f"--set {key}") if value_text.strip() else "")
    parts = key.split(".")
    node: dict[str, Any] | list[Any] = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(key, ".".join(parts[:depth]), part, node)
            if index == len(node):
                node.append(value if last else {})
            elif last:
                node[index] = value
            child = node[index]
        else:
            if last:
                node[part] = value
                return
            if parts[:depth] == ["data"] and part == "sources" and "sources" not in node:
                _expand_single_source(node)
            if part not in node and parts[depth + 1].isdigit():
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"--set {key}: {prefix} is not in the config, so it has no item "
                    f"{parts[depth + 1]}; set the whole list, e.g. --set '{prefix}=[...]'"
                )
            child = node.setdefault(part, {})
        if last:
            return
        if not isinstance(child, dict | list):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {key}: {prefix} is a value, not a section")
        node = child


def _list_index(key: str, where: str, part: str, items: list[Any]) -> int:
    """`part` as an index into the list at `where`, or a ConfigError saying which exist."""
    count = len(items)
    existing = "0" if count == 1 else f"0 to {count - 1}"
    choices = f"{existing}, or {count} to append one" if count else "0 to add the first"
    if not part.isdigit():
        raise ConfigError(
            f"--set {key}: {where} is a list of {count} item{'s' if count != 1 else ''}; "
            f"pick one by its index ({choices}), not {part!r}"
        )
    index = int(part)
    if index > count:
        raise ConfigError(
            f"--set {key}: {where} has {count} item{'s' if count != 1 else ''}, "
            f"so there is no item {index}; use {choices}"
        )
    return index


def _expand_single_source(data: dict[str, Any]) -> None:
    """Rewrite the `data: {type: text, path: ...}` shorthand as `sources: [{...}]` in place,
    so that `--set data.sources.0.path=...` edits the one source the file describes."""
    own = set(DataConfig.model_fields)
    source = {k: data.pop(k) for k in [k for k in data if k not in own]}
    if source:
        data["sources"] = [source]


def _typed_here(value: Any) -> Any:
    """The parsed `--set` value with every string marked as typed on the command line."""
    if isinstance(value, str):
        return CommandLineStr(value)
    if isinstance(value, list):
        return [_typed_here(item) for item in value]
    if isinstance(value, dict):
        return {k: _typed_here(v) for k, v in value.items()}
    return value


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    raw: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Load, override and validate. Relative paths in the file resolve against its folder."""
    if path is not None:
        path = Path(path)
        data = read_config_file(path)
        base_dir = path.resolve().parent
        source = str(path)
    else:
        data = dict(raw or {})
        base_dir = Path.cwd()
        source = "<config>"
    for assignment in overrides:
        apply_override(data, assignment)
    return validate_config(data, base_dir=base_dir, source=source)


def validate_config(
    data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "<config>"
) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(
            dict(data), context={"base_dir": base_dir or Path.cwd()}
        )
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, source)) from None


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def format_validation_error(exc: ValidationError, data: Mapping[str, Any], source: str) -> str:
    errors = exc.errors(include_url=False)
    lines = [f"invalid config {source} ({len(errors)} error{'s' if len(errors) > 1 else ''}):"]
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden" and _is_shorthand_beside_sources(loc, data):
            key = loc[1]
            lines.append(
                f"  {dotted}: data.{key} and data.sources cannot both be set: move {key} into "
                f"a source (data.sources.0.{key}), or drop sources to describe one source "
                "directly under data"
            )
        elif err["type"] == "extra_forbidden":
            advice = _suggest_key(loc, data)
            lines.append(f"  {dotted}: unknown key ({advice})")
        elif err["type"] == "missing":
            lines.append(f"  {dotted}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = f" (got {err['input']!r})" if not isinstance(err["input"], dict | list) else ""
            lines.append(f"  {dotted}: {msg}{got}")
    return "\n".join(lines)


def _is_shorthand_beside_sources(loc: Sequence[str], data: Mapping[str, Any]) -> bool:
    """`data.path` (a source's key, the one-source shorthand) next to `data.sources`."""
    section = data.get("data")
    if len(loc) != 2 or loc[0] != "data" or not isinstance(section, Mapping):
        return False
    if "sources" not in section:
        return False
    source_keys = {
        name
        for type_name in known_types("source")
        for name in getattr(config_class("source", type_name), "model_fields", {})
    }
    return loc[1] in source_keys


def _suggest_key(loc: Sequence[str], data: Mapping[str, Any]) -> str:
    """Closest key in the same section, else the closest leaf anywhere (lr is in optimization)."""
    known = _field_names_at(loc[:-1], data)
    hint = difflib.get_close_matches(loc[-1], known, n=1)
    if hint:
        return f"did you mean '{'.'.join([*loc[:-1], hint[0]])}'?"
    elsewhere = {
        name: f"{section}.{name}"
        for section in ExperimentConfig.model_fields
        for name in _field_names_at([section], data)
    }
    hint = difflib.get_close_matches(loc[-1], list(elsewhere), n=1)
    if hint:
        return f"did you mean '{elsewhere[hint[0]]}'?"
    return f"known keys here: {', '.join(known)}"


def _field_names_at(loc: Sequence[str], data: Any) -> list[str]:
    """Names valid at `loc`, following component sections through their `type`."""
    model: type[BaseModel] | None = ExperimentConfig
    pending: tuple[type[BaseModel], str] | None = None  # a list field waiting for its index
    for part in loc:
        if pending is not None and part.isdigit():
            items = data if isinstance(data, list) else []
            data = items[int(part)] if int(part) < len(items) else {}
            model, pending = _model_of_field(*pending, data), None
            continue
        if model is None or part not in model.model_fields:
            return []
        data = data.get(part, {}) if isinstance(data, Mapping) else {}
        if typing.get_origin(model.model_fields[part].annotation) is list:
            pending = (model, part)
            continue
        model = _model_of_field(model, part, data)
    return sorted(model.model_fields) if model is not None and pending is None else []


def _model_of_field(owner: type[BaseModel], name: str, data: Any) -> type[BaseModel] | None:
    field = owner.model_fields[name]
    for meta in _annotation_metadata(field.annotation, field.metadata):
        if isinstance(meta, Section):
            type_name = data.get("type") if isinstance(data, Mapping) else None
            type_name = type_name or default_type(meta.name)
            cls = config_class(meta.name, str(type_name))
            return cls if cls is not None else ComponentConfig
    for arg in _flatten(field.annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _annotation_metadata(annotation: Any, metadata: list[Any]) -> list[Any]:
    found = list(metadata)
    if typing.get_origin(annotation) is list:  # list[Annotated[..., Section]]
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is typing.Annotated:
        found.extend(annotation.__metadata__)
    return found


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [a for arg in typing.get_args(annotation) for a in _flatten(arg)]
    return [annotation]
