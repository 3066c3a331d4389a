"""Config files that are not what they seem, and `--set` overrides into lists and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from neat.config import load_config
from neat.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_binary_config_file_is_one_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xd8\x00\x00 not a config")
    with pytest.raises(ConfigError, match=r"model\.yaml: not a text config file.*UTF-8"):
        load_config(path)


def test_utf16_without_a_byte_order_mark_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes("data: {path: c.txt}\n".encode("utf-16-le"))  # valid UTF-8, full of NULs
    with pytest.raises(ConfigError, match=r"c\.yaml: not a text config file.*NUL"):
        load_config(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_text_with_a_byte_order_mark_is_decoded(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes("data: {path: c.txt}\ntraining: {max_steps: 7}\n".encode(encoding))
    assert load_config(path).training.max_steps == 7


def test_json_duplicate_keys_are_refused_like_yaml_and_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.json",
        '{"data": {"path": "c.txt"}, "training": {"max_steps": 5, "max_steps": 50}}',
    )
    with pytest.raises(ConfigError, match=rf"{path}: duplicate key 'max_steps'"):
        load_config(path)


def test_set_indexes_into_a_list_and_into_the_one_source_shorthand(tmp_path: Path) -> None:
    listed = write(
        tmp_path / "list.yaml",
        "data:\n  sources:\n    - {type: text, path: a.txt}\n    - {type: text, path: b.txt}\n",
    )
    cfg = load_config(listed, ["data.sources.1.weight=3", "data.sources.2={path: c.txt}"])
    assert [s.weight for s in cfg.data.sources] == [1.0, 3.0, 1.0]
    assert Path(cfg.data.sources[2].path).name == "c.txt"

    short = write(tmp_path / "short.yaml", "data: {type: text, path: a.txt}\n")
    cfg = load_config(short, ["data.sources.0.type=jsonl", "data.sources.0.text_field=body"])
    [source] = cfg.data.sources
    assert (source.type, source.text_field, Path(source.path).name) == ("jsonl", "body", "a.txt")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.sources.5.path=x",
            "--set data.sources.5.path: data.sources has 2 items, so there is no item 5; "
            "use 0 to 1, or 2 to append one",
        ),
        (
            "data.sources.first.path=x",
            "--set data.sources.first.path: data.sources is a list of 2 items; pick one by its "
            "index (0 to 1, or 2 to append one), not 'first'",
        ),
        (
            "monitoring.monitors.0=console",
            "--set monitoring.monitors.0: monitoring.monitors is not in the config, so it has "
            "no item 0; set the whole list, e.g. --set 'monitoring.monitors=[...]'",
        ),
        (
            "data.path=c.txt",
            "data.path: data.path and data.sources cannot both be set: move path into a source "
            "(data.sources.0.path), or drop sources",
        ),
        ("data.sources.0.pth=x", "data.sources.0.pth: unknown key (did you mean "),
        ("data.sources.0=x", "data.sources.0: expected a mapping with a 'type' key, got str"),
    ],
)
def test_set_with_lists_gives_the_right_advice(tmp_path: Path, override: str, message: str) -> None:
    path = write(
        tmp_path / "c.yaml",
        "data:\n  sources:\n    - {type: text, path: a.txt}\n    - {type: text, path: b.txt}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert message in str(err.value)
    assert "indexing.paths" not in str(err.value)  # the old, misleading did-you-mean


def test_file_that_mixes_path_and_sources_gets_the_same_advice(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml", "data:\n  path: a.txt\n  sources:\n    - {type: text, path: b.txt}\n"
    )
    with pytest.raises(ConfigError, match=r"data\.path and data\.sources cannot both be set"):
        load_config(path)


def test_paths_typed_in_set_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "exp" / "c.yaml",
        "data: {path: corpus.txt, cache_dir: cache}\nmodel: {init_from: runs/base}\n",
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    from_file = load_config(config)
    assert from_file.data.sources[0].path == str(tmp_path / "exp" / "corpus.txt")

    typed = load_config(
        config,
        [
            "data.path=my.txt",
            "model.init_from=runs/mine",
            "data.cache_dir=../elsewhere",
        ],
    )
    assert typed.data.sources[0].path == str(work / "my.txt")
    assert typed.model.init_from == str(work / "runs" / "mine")
    assert typed.data.cache_dir == str(tmp_path / "elsewhere")
    subtree = load_config(config, ["data={type: text, path: [a.txt, /abs/b.txt]}"])
    assert subtree.data.sources[0].path == [str(work / "a.txt"), "/abs/b.txt"]
    # only what was typed moves: the file's other paths still mean its own folder
    assert load_config(config, ["data.path=my.txt"]).data.cache_dir == str(
        tmp_path / "exp" / "cache"
    )
