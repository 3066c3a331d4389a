"""TextFileSource: resolving data.path, reading documents, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neat.data import TextFileSource
from neat.errors import DataError
from neat.interfaces import IDataSource


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_single_file_is_one_document(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.txt", "hello")
    source = TextFileSource([str(f)])
    assert isinstance(source, IDataSource)
    docs = list(source.documents())
    assert [(d.text, d.source) for d in docs] == [("hello", str(f))]
    assert "1 file" in source.describe()


def test_lone_string_is_a_path_not_characters(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.txt", "x")
    assert [d.text for d in TextFileSource(str(f)).documents()] == ["x"]


def test_directory_is_walked_sorted_skipping_hidden(tmp_path: Path) -> None:
    _write(tmp_path / "b.txt", "B")
    _write(tmp_path / "a.txt", "A")
    _write(tmp_path / "sub" / "c.txt", "C")
    _write(tmp_path / ".hidden.txt", "no")
    _write(tmp_path / ".git" / "config", "no")
    _write(tmp_path / "sub" / ".cache" / "d.txt", "no")
    docs = list(TextFileSource([str(tmp_path)]).documents())
    assert [d.text for d in docs] == ["A", "B", "C"]


def test_glob_pattern_recursive(tmp_path: Path) -> None:
    _write(tmp_path / "x" / "one.txt", "1")
    _write(tmp_path / "x" / "y" / "two.txt", "2")
    _write(tmp_path / "x" / "skip.md", "no")
    source = TextFileSource([str(tmp_path / "**" / "*.txt")])
    assert [d.text for d in source.documents()] == ["1", "2"]


def test_several_entries_keep_order_and_drop_duplicates(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.txt", "A")
    b = _write(tmp_path / "b.txt", "B")
    source = TextFileSource([str(b), str(a), str(tmp_path / "*.txt")])
    assert [d.text for d in source.documents()] == ["B", "A"]


def test_missing_path_names_path_and_config_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "*.txt"
    with pytest.raises(DataError) as info:
        TextFileSource([str(missing)])
    message = str(info.value)
    assert str(missing) in message
    assert "check data.path" in message


def test_folder_with_only_hidden_files_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / ".only", "x")
    with pytest.raises(DataError, match="matches no files"):
        TextFileSource([str(tmp_path)])


def test_no_paths_is_an_error() -> None:
    with pytest.raises(DataError, match=r"data\.path"):
        TextFileSource([])


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff\xfe broken")
    source = TextFileSource([str(bad)])
    with pytest.raises(DataError, match=r"bad\.txt.*not valid utf-8.*offset 3"):
        list(source.documents())


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.txt", "same")
    g = _write(tmp_path / "b.txt", "other")
    source = TextFileSource([str(tmp_path)])
    first = source.fingerprint()
    assert len(first) == 64
    assert TextFileSource([str(tmp_path)]).fingerprint() == first  # stable across instances
    f.write_text("samE", encoding="utf-8")  # same size, different content
    changed = source.fingerprint()
    assert changed != first
    f.write_text("same", encoding="utf-8")
    assert source.fingerprint() == first
    g.unlink()
    assert TextFileSource([str(tmp_path)]).fingerprint() != first  # the file set is keyed too


def test_fingerprint_streams_large_files(tmp_path: Path) -> None:
    f = tmp_path / "big.txt"
    f.write_bytes(b"a" * (3 << 20))
    before = TextFileSource([str(f)]).fingerprint()
    with f.open("r+b") as handle:  # change one byte past the first 1 MiB block
        handle.seek((2 << 20) + 5)
        handle.write(b"b")
    assert TextFileSource([str(f)]).fingerprint() != before


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads whatever the mode says
        path.chmod(0o644)
        pytest.skip("this user reads files whatever their mode (root)")
    return path


def test_unreadable_file_is_one_data_error_naming_it(tmp_path: Path) -> None:
    _write(tmp_path / "docs" / "a.txt", "alpha")
    locked = _unreadable(_write(tmp_path / "docs" / "b.txt", "bravo"))
    try:
        source = TextFileSource([str(tmp_path / "docs")])
        for use in (source.fingerprint, lambda: list(source.documents())):
            with pytest.raises(DataError, match=r"cannot read data file .*b\.txt.*data\.exclude"):
                use()
    finally:
        locked.chmod(0o644)


def test_file_gone_after_resolving_is_one_data_error_naming_it(tmp_path: Path) -> None:
    # Fails the same way as an unreadable file (open() raises in fingerprint), also as root.
    _write(tmp_path / "docs" / "a.txt", "alpha")
    gone = _write(tmp_path / "docs" / "b.txt", "bravo")
    source = TextFileSource([str(tmp_path / "docs")])
    gone.unlink()
    gone.symlink_to(tmp_path / "nowhere.txt")  # a dangling symlink in its place
    for use in (source.fingerprint, source.describe, lambda: list(source.documents())):
        with pytest.raises(DataError, match=r"cannot read data file .*b\.txt.*data\.exclude"):
            use()
