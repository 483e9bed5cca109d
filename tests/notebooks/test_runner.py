"""The notebook runner itself, on scratch notebooks: failures carry the cell's traceback,
checks come back as values, and the notebook file is never written."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.notebooks.runner import execute

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _notebook(folder: Path, *sources: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, folder / "scratch.ipynb")
    return "scratch.ipynb"


def test_checks_come_back_and_the_file_is_untouched(tmp_path: Path) -> None:
    name = _notebook(tmp_path, "import os\nx = [1, 2]", "print('hello')")
    before = (tmp_path / name).read_bytes()
    run = execute(
        name,
        {"x": "x", "cwd": "os.getcwd()", "two_steps": "y = sum(x)\ny * 10", "bad": "1 / 0"},
        folder=tmp_path,
    )
    run.assert_ran()
    assert run.value("x") == [1, 2] and run.value("two_steps") == 30
    assert Path(run.value("cwd")).resolve() == tmp_path.resolve()
    assert run.text("print('hello')") == "hello\n"
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        run.value("bad")
    assert len(run.cells) == 2  # the check cell is not one of the notebook's cells
    assert set(run.cell_seconds()) == {0, 1}
    assert (tmp_path / name).read_bytes() == before


def test_a_failing_cell_fails_with_its_traceback(tmp_path: Path) -> None:
    failing = "def broken():\n    raise KeyError('no such trait')\nbroken()"
    name = _notebook(tmp_path, "x = 1", failing)
    run = execute(name, {"x": "x"}, folder=tmp_path)
    with pytest.raises(AssertionError) as failure:
        run.value("x")
    message = str(failure.value)
    assert "def broken():" in message  # the failing cell's source
    assert "KeyError" in message and "no such trait" in message and "broken()" in message
    assert "\x1b[" not in message  # colour codes stripped
