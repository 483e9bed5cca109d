"""Named prompt sets: plain text files, one prompt a line, shipped or your own.

Built-in sets live in ``trait_lab/data/prompt_sets/``: ``neutral`` (50 everyday instructions
used for massive-dim calibration) and ``borderline`` (requests near a refusal boundary, for
research-mode calibration). Any ``.txt`` path works too.

Example:
    >>> list_prompt_sets()
    ['borderline', 'neutral']
    >>> len(load_prompt_set("neutral"))
    50
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def prompt_sets_dir() -> Path:
    """The folder holding the built-in prompt sets."""
    return Path(str(resources.files("trait_lab") / "data" / "prompt_sets"))


def list_prompt_sets() -> list[str]:
    """Names of the built-in prompt sets, sorted."""
    return sorted(p.stem for p in prompt_sets_dir().glob("*.txt"))


def load_prompt_set(name_or_path: str | os.PathLike[str]) -> list[str]:
    """The prompts of a built-in set (by name) or of a text file (one prompt a line).

    Blank lines are skipped. Raises ``FileNotFoundError`` listing the built-in sets when the
    name matches none and no such file exists, and ``ValueError`` for an empty file.
    """
    text = str(name_or_path)
    builtin = prompt_sets_dir() / f"{text}.txt"
    if builtin.is_file():
        path = builtin
    elif Path(text).is_file():
        path = Path(text)
    else:
        raise FileNotFoundError(
            f"no prompt set {text!r}: built-in sets are {list_prompt_sets()}, or pass the path "
            "of a .txt file with one prompt a line"
        )
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ValueError(f"prompt set {path} is empty; put one prompt on each line")
    return prompts
