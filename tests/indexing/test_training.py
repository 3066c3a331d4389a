"""Training on indexed markdown: a file added and one deleted during a real run enter and
leave the training stream at the next epoch boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from neat.config import load_config
from neat.data.refresh import RefreshingSampler
from neat.di import build_container
from neat.errors import DataError
from neat.interfaces import Batch
from neat.monitoring.events import StepCompleted

# Each file's body is one letter no other text uses, so a batch shows which files it came from.
KEEP, OLD, NEW = ord("k"), ord("q"), ord("z")

CONFIG = """\
name: live-docs
model: {{type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 16, dropout: 0.0}}
data:
  sources: [{{type: markdown, path: docs, reindex_interval: {interval}}}]
  tokenizer: {{type: byte}}
  val_fraction: 0.1
  cache_dir: cache
indexing: {{db: index.db}}
training: {{max_steps: {steps}, batch_size: 4, seed: 3, device: cpu}}
evaluation: {{interval: 1000, batches: 1}}
monitoring: {{log_interval: 1000, progress: plain}}
checkpoint: {{interval: 1000, save_final: false}}
"""


def write_docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "keep.md").write_text("# Keep\n\n" + "k" * 600 + "\n", encoding="utf-8")
    (docs / "old.md").write_text("# Old\n\n" + "q" * 600 + "\n", encoding="utf-8")
    return docs


class RecordingBatches:
    """The real sampler, remembering which letters each batch held and whether the data had
    been refreshed by then."""

    def __init__(self, inner: RefreshingSampler) -> None:
        self.inner = inner
        self.seen: list[tuple[int, set[int]]] = []  # (refreshes so far, token ids)

    def next_batch(self) -> Batch:
        batch = self.inner.next_batch()
        ids = set(batch.input_ids.flatten().tolist()) | set(batch.targets.flatten().tolist())
        self.seen.append((len(self.inner.refreshes), ids))
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def test_files_added_and_removed_mid_run_swap_in_at_the_next_epoch(tmp_path: Path) -> None:
    docs = write_docs(tmp_path)
    path = tmp_path / "live.yaml"
    path.write_text(CONFIG.format(interval=2, steps=45), encoding="utf-8")
    container = build_container(load_config(path), run_dir=tmp_path / "run")
    sampler = container.train_batches()
    assert isinstance(sampler, RefreshingSampler)
    first_epoch = sampler.batches_per_epoch
    assert 5 < first_epoch < 30  # the run below spans about two epochs of the first corpus
    recorder = RecordingBatches(sampler)
    container.train_batches.override(providers.Object(recorder))

    def edit_files(event: object) -> None:
        if isinstance(event, StepCompleted) and event.step == 3:
            (docs / "old.md").unlink()
            (docs / "new.md").write_text("# New\n\n" + "z" * 600 + "\n", encoding="utf-8")

    container.event_bus().subscribe(edit_files, StepCompleted)
    state = container.trainer().fit()

    assert state.step == 45
    # the monitor re-indexed at step 4; the data changed where the first epoch ended
    assert [r.epoch for r in sampler.refreshes] == [1]
    before = [ids for refreshed, ids in recorder.seen if refreshed == 0]
    after = [ids for refreshed, ids in recorder.seen if refreshed == 1]
    assert len(before) == first_epoch and len(after) == 45 - first_epoch
    assert any(OLD in ids for ids in before) and not any(NEW in ids for ids in before)
    assert any(NEW in ids for ids in after) and not any(OLD in ids for ids in after)
    assert any(KEEP in ids for ids in after)
    # the index itself follows the files
    indexed = {Path(r.path).name for r in container.data_source().indexer.files()}
    assert indexed == {"keep.md", "new.md"}


def test_without_reindexing_the_corpus_is_fixed_for_the_run(tmp_path: Path) -> None:
    write_docs(tmp_path)
    path = tmp_path / "fixed.yaml"
    path.write_text(CONFIG.format(interval=0, steps=2), encoding="utf-8")
    container = build_container(load_config(path), run_dir=tmp_path / "run")
    assert not isinstance(container.train_batches(), RefreshingSampler)
    assert container.trainer().fit().step == 2


def test_changed_documents_since_a_checkpoint_resume_at_the_next_epoch(tmp_path: Path) -> None:
    docs = write_docs(tmp_path)
    path = tmp_path / "live.yaml"
    path.write_text(CONFIG.format(interval=1, steps=4), encoding="utf-8")
    sampler = build_container(load_config(path), run_dir=tmp_path / "a").train_batches()
    assert isinstance(sampler, RefreshingSampler)
    for _ in range(3):
        sampler.next_batch()
    saved = sampler.state_dict()
    assert saved["epoch"] == 0 and saved["cursor"] == 3

    unchanged = build_container(load_config(path), run_dir=tmp_path / "b").train_batches()
    unchanged.load_state_dict(saved)
    assert unchanged.state_dict() == saved  # same documents: exact

    (docs / "old.md").write_text("# Old\n\nedited " + "q" * 500 + "\n", encoding="utf-8")
    changed = build_container(load_config(path), run_dir=tmp_path / "c").train_batches()
    changed.load_state_dict(saved)
    assert changed.state_dict()["epoch"] == 1 and changed.state_dict()["cursor"] == 0


def test_a_folder_without_markdown_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not markdown", encoding="utf-8")
    path = tmp_path / "empty.yaml"
    path.write_text(CONFIG.format(interval=0, steps=2), encoding="utf-8")
    with pytest.raises(DataError, match=r"no markdown files under .*docs"):
        build_container(load_config(path), run_dir=tmp_path / "run").data_source()
