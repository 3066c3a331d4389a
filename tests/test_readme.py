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


def test_readme_component_example_registers_a_model_type_configs_can_name(
    tmp_path: Path, tiny_config: Path
) -> None:
    from neat.config import load_config
    from neat.di import build_container

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Adding a component type", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "readme_component"}
    exec(compile(code.group(1), "README.md", "exec", dont_inherit=True), namespace)  # our README
    config = load_config(
        tiny_config, ["model={type: bigram, block_size: 32}", "training.max_steps=5"]
    )
    container = build_container(config, run_dir=tmp_path / "run")
    assert type(container.model()).__name__ == "Bigram"
    assert container.trainer().fit().step == 5
    assert (tmp_path / "run" / "checkpoints").is_dir()
