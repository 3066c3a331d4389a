"""The README's library example runs as written (paths pointed into a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_library_example_trains(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using neat as a library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1)
    source = source.replace('"examples/', f'"{REPO}/examples/')
    source = source.replace('"runs/library-demo"', f'"{tmp_path / "demo"}"')
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(source, "README.md", "exec"), namespace)  # our own README
    state = namespace["state"]
    assert state.step == 20  # type: ignore[attr-defined]
    assert (tmp_path / "demo" / "metrics.jsonl").is_file()
