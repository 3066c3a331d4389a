"""The file walk: include/exclude globs, hidden and skipped folders, symlinks, order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neat.config.indexing import IndexingConfig
from neat.errors import DataError
from neat.indexing.scan import compile_globs, content_skip_reason, scan


def write(path: Path, text: str = "# Title\n\nbody\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rels(root: Path, config: IndexingConfig | None = None) -> list[str]:
    return [f.rel for f in scan([root], config or IndexingConfig()).files]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel in (
        "a.md",
        "b.markdown",
        "notes.txt",
        "guide/intro.md",
        "guide/deep/more.md",
        "drafts/wip.md",
        "drafts/old/older.md",
        "CHANGELOG.md",
        "guide/CHANGELOG.md",
        ".hidden.md",
        ".git/config.md",
        "node_modules/pkg/readme.md",
        "build/out.md",
    ):
        write(root / rel)
    return root


def test_walk_is_recursive_sorted_and_filtered_by_name(tree: Path) -> None:
    assert rels(tree) == [
        "CHANGELOG.md",
        "a.md",
        "b.markdown",
        "drafts/old/older.md",
        "drafts/wip.md",
        "guide/CHANGELOG.md",
        "guide/deep/more.md",
        "guide/intro.md",
    ]
    files = scan([tree], IndexingConfig()).files
    assert all(f.path.is_absolute() and f.path == tree / f.rel for f in files)
    assert all(f.size == f.path.stat().st_size for f in files)
    assert all(f.mtime_ns == f.path.stat().st_mtime_ns for f in files)


def test_hidden_and_skip_dirs_can_be_switched_off(tree: Path) -> None:
    config = IndexingConfig(skip_hidden=False, skip_dirs=["build"])
    found = rels(tree, config)
    assert {".hidden.md", ".git/config.md", "node_modules/pkg/readme.md"} <= set(found)
    assert "build/out.md" not in found


def test_exclude_globs_match_relative_paths(tree: Path) -> None:
    one_level = rels(tree, IndexingConfig(exclude=["drafts/*.md"]))
    assert "drafts/wip.md" not in one_level and "drafts/old/older.md" in one_level
    # a folder matching a pattern is not entered (as in gitignore)
    assert not any(
        r.startswith("drafts/") for r in rels(tree, IndexingConfig(exclude=["drafts/*"]))
    )
    anywhere = rels(tree, IndexingConfig(exclude=["**/CHANGELOG.md", "drafts"]))
    assert not any("CHANGELOG" in r or r.startswith("drafts") for r in anywhere)
    top_only = rels(tree, IndexingConfig(exclude=["CHANGELOG.md"]))
    assert "CHANGELOG.md" not in top_only and "guide/CHANGELOG.md" in top_only
    deep = rels(tree, IndexingConfig(exclude=["guide/**"]))
    assert not any(r.startswith("guide/") for r in deep)


def test_include_globs_match_names(tree: Path) -> None:
    assert rels(tree, IndexingConfig(include=["*.txt"])) == ["notes.txt"]
    assert rels(tree, IndexingConfig(include=["?.md"])) == ["a.md"]


def test_glob_translation() -> None:
    pattern = compile_globs(["a/**/z.md", "[!x]?.md"], path_globs=True)
    assert pattern is not None
    assert pattern.match("a/z.md") and pattern.match("a/b/c/z.md")
    assert pattern.match("yy.md") and not pattern.match("xy.md")
    assert not pattern.match("d/yy.md") and not pattern.match("a/z.md.bak")
    assert compile_globs([], path_globs=True) is None


def test_single_file_root_is_taken_as_given(tree: Path) -> None:
    result = scan([tree / "notes.txt", tree / ".hidden.md"], IndexingConfig())
    assert [(f.rel, f.root) for f in result.files] == [
        (".hidden.md", tree / ".hidden.md"),
        ("notes.txt", tree / "notes.txt"),
    ]


def test_overlapping_roots_give_each_file_once(tree: Path) -> None:
    files = scan([tree, tree / "guide", tree / "a.md"], IndexingConfig()).files
    paths = [f.path for f in files]
    assert len(paths) == len(set(paths)) == 8


def test_missing_root_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan([tmp_path / "nope"], IndexingConfig())


def test_symlinks_outside_the_root_are_listed_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    write(root / "a.md")
    write(outside / "secret.md")
    os.symlink(outside / "secret.md", root / "secret-link.md")
    os.symlink(outside, root / "outside-dir")
    os.symlink(tmp_path / "missing.md", root / "broken.md")
    os.symlink(root / "a.md", root / "alias.md")  # inside: followed
    result = scan([root], IndexingConfig())
    assert [f.rel for f in result.files] == ["a.md", "alias.md"]
    assert result.skipped["symlink_outside"] == sorted(
        [str(root / "outside-dir"), str(root / "secret-link.md")]
    )
    assert result.skipped["symlink_broken"] == [str(root / "broken.md")]


def test_symlink_loops_terminate_and_each_folder_is_walked_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "sub" / "x.md")
    write(root / "z" / "y.md")
    os.symlink(root, root / "sub" / "loop")  # back to the root
    os.symlink(root / "sub", root / "sub" / "self")  # to itself
    os.symlink(root / "z", root / "a-link")  # to a folder walked under its real name
    os.symlink(tmp_path / "root" / "nothere", root / "dangling")
    result = scan([root], IndexingConfig())
    assert [f.rel for f in result.files] == ["sub/x.md", "z/y.md"]
    assert set(result.skipped["symlink_loop"]) == {
        str(root / "sub" / "loop"),
        str(root / "sub" / "self"),
        str(root / "a-link"),
    }


def test_a_linked_folder_reachable_only_through_its_link_is_walked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "build" / "gen.md")  # `build` is a skipped folder name
    os.symlink(root / "build", root / "generated")
    assert [f.rel for f in scan([root], IndexingConfig()).files] == ["generated/gen.md"]


def test_content_skip_reason() -> None:
    assert content_skip_reason("# héllo\n".encode()) is None
    assert content_skip_reason(b"PNG\x00\x01\x02") == "binary"
    assert content_skip_reason("café".encode("latin-1")) == "not_utf8"
    assert content_skip_reason(b"") is None


def test_scan_of_thousands_of_files_is_quick(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for d in range(20):
        folder = root / f"d{d:02d}"
        folder.mkdir(parents=True)
        for i in range(100):
            (folder / f"f{i:03d}.md").write_bytes(b"# x\n")
    import time

    started = time.perf_counter()
    files = scan([root], IndexingConfig()).files
    assert len(files) == 2000
    assert time.perf_counter() - started < 2.0
