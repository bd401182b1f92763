"""The README stays true: its file tree lists every source file, and its Python example runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "src", "bench", "recipes", "tests"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.split() if not f.endswith(("py.typed", ".gitkeep")) and "/results/" not in f]


def tree_block() -> str:
    match = re.search(r"## Files\n+```text\n(.*?)```", README, re.S)
    assert match, "README needs a '## Files' section with a ```text tree"
    return match.group(1)


def test_every_source_file_is_in_the_tree():
    tree = tree_block()
    names = set(re.findall(r"[\w.\-]+\.(?:py|yaml|md|json|j2|c)\b", tree))
    missing = [f for f in tracked_files() if Path(f).name not in names]
    assert not missing, f"add these files to the README tree: {missing}"


def test_python_example_runs(minilm_dir):
    match = re.search(r"```python\n(.*?)```", README, re.S)
    assert match, "README needs a Python example"
    code = match.group(1)
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 6
    exec(compile(code, "README.md", "exec"), {})
