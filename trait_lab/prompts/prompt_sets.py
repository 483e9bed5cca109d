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


def read_utf8(path: Path) -> tuple[str, tuple[int, str] | None]:
    """The text of ``path``, and ``(line, why)`` when some bytes are not UTF-8 (else ``None``).

    Undecodable bytes become U+FFFD in the text, so a caller can still report other problems;
    ``why`` names the first bad byte, its byte offset, and the fix.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = p.write_bytes(b"ok\\n\\xffx")
        >>> text, (line, why) = read_utf8(p)
        >>> text, line, why[:48]
        ('ok\\n\\ufffdx', 2, 'not UTF-8 text: byte 0xff at byte offset 3 (line')
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        why = (
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line "
            f"{line}) cannot be decoded; save the file as UTF-8 (an editor's 'Save with "
            "encoding', or `iconv -f latin1 -t utf-8`)"
        )
        return data.decode("utf-8", errors="replace"), (line, why)


def prompt_sets_dir() -> Path:
    """The folder holding the built-in prompt sets."""
    return Path(str(resources.files("trait_lab") / "data" / "prompt_sets"))


def list_prompt_sets() -> list[str]:
    """Names of the built-in prompt sets, sorted."""
    return sorted(p.stem for p in prompt_sets_dir().glob("*.txt"))


def load_prompt_set(name_or_path: str | os.PathLike[str]) -> list[str]:
    """The prompts of a built-in set (by name) or of a text file (one prompt a line).

    Blank lines are skipped. Raises ``FileNotFoundError`` listing the built-in sets when the
    name matches none and no such file exists, and ``ValueError`` for an empty file or one
    that is not UTF-8 text.
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
    text, bad = read_utf8(path)
    if bad is not None:
        raise ValueError(f"prompt set {str(path)!r} is {bad[1]}")
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ValueError(f"prompt set {path} is empty; put one prompt on each line")
    return prompts
