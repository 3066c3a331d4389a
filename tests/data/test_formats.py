"""Include/exclude filters, binary and non-UTF-8 files, JSONL records, mixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog
import structlog.testing

from neat.config import load_config
from neat.data import JsonlSource, MixtureSource, TextFileSource
from neat.data.sources import build_data_source
from neat.errors import DataError


def tree(root: Path) -> Path:
    (root / "docs" / "drafts").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha")
    (root / "docs" / "b.md").write_text("bravo")
    (root / "docs" / "drafts" / "c.txt").write_text("charlie")
    (root / "docs" / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (root / "docs" / "latin1.txt").write_bytes("café".encode("latin-1"))
    return root / "docs"


def texts(source: TextFileSource) -> list[str]:
    return [doc.text for doc in source.documents()]


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    docs = tree(tmp_path)
    only_txt = TextFileSource([str(docs)], include=["*.txt"], exclude=["drafts/*"])
    assert [f.name for f in only_txt.files] == ["a.txt", "latin1.txt"]
    with pytest.raises(DataError, match="include/exclude"):
        TextFileSource([str(docs)], include=["*.rst"])


def test_binary_and_non_utf8_files_are_skipped_and_named(tmp_path: Path) -> None:
    docs = tree(tmp_path)
    source = TextFileSource([str(docs)], on_decode_error="skip")
    assert texts(source) == ["alpha", "bravo", "charlie"]
    assert sorted(Path(p).name for p in source.report.undecodable) == ["blob.bin", "latin1.txt"]
    assert "2 binary/non-UTF-8 file(s) skipped" in source.report.summary()


def test_replace_policy_decodes_and_fail_policy_stops(tmp_path: Path) -> None:
    docs = tree(tmp_path)
    replaced = texts(TextFileSource([str(docs / "latin1.txt")], on_decode_error="replace"))
    assert replaced == ["caf\ufffd"]
    with pytest.raises(DataError, match=r"latin1\.txt is binary or not valid utf-8"):
        texts(TextFileSource([str(docs / "latin1.txt")], on_decode_error="fail"))


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_text_field_and_bad_lines(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            json.dumps({"body": "one"}),
            "{not json",
            json.dumps({"other": 1}),
            json.dumps({"body": "two"}),
        ],
    )
    source = JsonlSource([str(path)], text_field="body")
    assert [d.text for d in source.documents()] == ["one", "two"]
    assert source.report.bad_lines == [f"{path}:2", f"{path}:3"]
    strict = JsonlSource([str(path)], text_field="body", on_bad_line="fail")
    with pytest.raises(DataError, match=rf"{path.name}:2"):
        list(strict.documents())


def test_prompt_response_and_chat_segments(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            json.dumps({"prompt": "Q: 2+2=", "response": "4"}),
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"},
                    ]
                }
            ),
        ],
    )
    first, chat = list(JsonlSource([str(path)], format="prompt_response").documents())
    assert first.text == "Q: 2+2=4"
    assert first.metadata["segments"] == [("Q: 2+2=", False), ("4", True)]
    trained = [text for text, target in chat.metadata["segments"] if target]
    assert trained == ["hello\n"]
    assert chat.text == "<|user|>\nhi\n<|assistant|>\nhello\n"


def test_config_shorthand_and_weighted_mixture(tmp_path: Path) -> None:
    docs = tree(tmp_path)
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps({"text": "zulu"})])
    single = load_config(raw={"data": {"type": "text", "path": str(docs / "a.txt")}})
    assert isinstance(build_data_source(single.data, single.indexing), TextFileSource)
    mixed = load_config(
        raw={
            "data": {
                "sources": [
                    {"type": "text", "path": str(docs / "a.txt"), "weight": 3},
                    {"type": "jsonl", "path": str(path)},
                ]
            }
        }
    )
    source = build_data_source(mixed.data, mixed.indexing)
    assert isinstance(source, MixtureSource)
    assert [w for _, w in source.parts] == [3.0, 1.0]
    assert [d.text for d in source.documents()] == ["alpha", "zulu"]


def test_jsonl_splits_records_on_newlines_only(tmp_path: Path) -> None:
    # U+2028, U+2029, U+0085 and form feeds are valid inside JSON strings (json.dumps keeps
    # them with ensure_ascii=False); str.splitlines would cut the record there.
    odd = ["a\u2028b", "c\u2029d", "e\u0085f", "g\x0ch", "i\x1cj"]
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in odd]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(("\r\n".join([*lines, "{broken"]) + "\r\n").encode("utf-8"))
    source = JsonlSource([str(path)])
    assert [d.text for d in source.documents()] == odd
    assert source.report.bad_lines == [f"{path}:6"]
    assert [d.source for d in JsonlSource([str(path)]).documents()][-1] == f"{path}:5"


def test_jsonl_line_numbers_stay_right_across_pieces(tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": f"record {i} \u2028 x" * 3}, ensure_ascii=False) for i in range(60)
    ]
    lines[57] = "{broken"
    path = write_jsonl(tmp_path / "big.jsonl", lines)
    source = JsonlSource([str(path)], piece_bytes=500)
    assert len(list(source.documents())) == 59
    assert source.report.bad_lines == [f"{path}:58"]


def test_jsonl_text_field_typo_names_the_field_file_and_keys(tmp_path: Path) -> None:
    lines = [json.dumps({"body": f"record {i}", "id": i}) for i in range(416)]
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    source = JsonlSource([str(path)], text_field="bdoy")
    with pytest.raises(DataError) as caught:
        list(source.documents())
    message = str(caught.value)
    assert "'bdoy'" in message and str(path) in message and "data.sources[].text_field" in message
    assert "'body'" in message and "'id'" in message and "malformed" not in message


def test_jsonl_prompt_field_typo_names_prompt_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sft.jsonl", [json.dumps({"question": "q", "response": "r"})])
    source = JsonlSource([str(path)], format="prompt_response")
    with pytest.raises(DataError, match=r"'prompt'.*data\.sources\[\]\.prompt_field"):
        list(source.documents())


def test_jsonl_field_missing_from_most_records_warns(tmp_path: Path) -> None:
    lines = [json.dumps({"body": "x"})] * 7 + [json.dumps({"text": "kept"})] * 3
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    source = JsonlSource([str(path)])
    with structlog.testing.capture_logs() as logs:
        assert [d.text for d in source.documents()] == ["kept"] * 3
    out = " ".join(str(entry) for entry in logs)
    assert "7 of 10 records" in out and "text_field" in out and "'body'" in out
