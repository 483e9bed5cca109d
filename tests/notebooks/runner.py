"""Execute a notebook once, in a fresh kernel, and read values back out of that kernel.

The notebook file is never written: a hidden check cell is appended to the in-memory copy only.
Each check is Python source run in the kernel's namespace after the last cell (statements, then
a final expression whose value is the check's value); the values come back as JSON
(``default=str`` for anything JSON cannot hold), and a check that raises comes back
as its traceback, so that only the test reading it fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT_S = 600  # as `pytest --nbmake --nbmake-timeout=600` had
MARKER = "@@trait_lab-checks@@"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Runs in the kernel: evaluate each expression, print one JSON line after MARKER.
_CHECK_CELL = """\
import ast as _tl_ast, json as _tl_json, traceback as _tl_tb
def _tl_check(source):
    tree = _tl_ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], _tl_ast.Expr) else None
    exec(compile(tree, "<check>", "exec"), globals())
    if last is not None:
        return eval(compile(_tl_ast.Expression(last.value), "<check>", "eval"), globals())
_tl_values = {{}}
for _tl_name, _tl_source in {checks!r}.items():
    try:
        _tl_values[_tl_name] = {{"value": _tl_check(_tl_source)}}
    except Exception:
        _tl_values[_tl_name] = {{"error": _tl_tb.format_exc()}}
print({marker!r} + _tl_json.dumps(_tl_values, default=str))
"""


@dataclass
class ExecutedNotebook:
    """What one execution of a notebook left behind.

    Attributes:
        name: the notebook's file name.
        cells: the executed cells of the notebook itself (check cells not included).
        seconds: wall time of the whole execution, kernel start included.
        error: the failing cell's source and traceback, when a cell failed.
        checks: each check's ``{"value": ...}`` or ``{"error": traceback}``.
    """

    name: str
    cells: list[Any] = field(repr=False)
    seconds: float
    error: str | None = field(default=None, repr=False)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def cell_seconds(self) -> dict[int, float]:
        """Each executed code cell's wall time, by cell index (nbclient's recorded timing)."""
        times = {}
        for i, cell in enumerate(self.cells):
            timing = cell.get("metadata", {}).get("execution", {})
            start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
            if start and end:
                times[i] = (_when(end) - _when(start)).total_seconds()
        return times

    def value(self, check: str) -> Any:
        """The value of one check expression; fails with the notebook's error if it had one.

        Example:
            >>> run = ExecutedNotebook("x.ipynb", [], 1.0, checks={"n": {"value": 3}})
            >>> run.value("n")
            3
        """
        self.assert_ran()
        result = self.checks[check]
        if "error" in result:
            raise AssertionError(f"{self.name}: check {check!r} raised:\n{result['error']}")
        return result["value"]

    def assert_ran(self) -> None:
        """Raise AssertionError with the failing cell's traceback if any cell failed."""
        if self.error is not None:
            raise AssertionError(f"{self.name} failed after {self.seconds:.0f} s:\n{self.error}")

    def code_cell(self, marker: str) -> Any:
        """The one code cell whose source contains ``marker``."""
        found = [c for c in self.cells if c.cell_type == "code" and marker in c.source]
        if len(found) != 1:
            raise AssertionError(f"{self.name}: {len(found)} code cells contain {marker!r}")
        return found[0]

    def text(self, marker: str) -> str:
        """Everything the code cell containing ``marker`` printed or displayed as plain text."""
        parts = []
        for output in self.code_cell(marker).outputs:
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output:
                parts.append(output.data.get("text/plain", ""))
        return "".join(parts)

    def html(self, marker: str) -> str:
        """The text/html the code cell containing ``marker`` displayed (a styled table)."""
        return "".join(
            o.data.get("text/html", "") for o in self.code_cell(marker).outputs if "data" in o
        )


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _failure(nb: Any, fallback: BaseException) -> str:
    """The source and traceback of the last cell that shows an error output."""
    for cell in reversed(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
                return f"{'-' * 75}\n{cell.source}\n{trace}"
    return _ANSI.sub("", str(fallback))


def execute(
    name: str,
    checks: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    folder: Path = NOTEBOOKS,
) -> ExecutedNotebook:
    """Execute ``folder/name`` in a fresh kernel (cwd: ``folder``), then evaluate ``checks``.

    ``env`` replaces the kernel's environment (default: this process's).

    Example:
        >>> run = execute("00_quickstart.ipynb", {"n": "len(texts)"})  # doctest: +SKIP
        >>> run.value("n")  # doctest: +SKIP
        3
    """
    nb = nbformat.read(folder / name, as_version=4)
    own = len(nb.cells)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    source = _CHECK_CELL.format(checks=dict(checks), marker=MARKER)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(folder)}},
        allow_errors=False,
        record_timing=True,
    )
    start = time.perf_counter()
    error: str | None = None
    extra = {} if env is None else {"env": dict(env)}  # passed on to the kernel's start
    try:
        client.execute(cwd=str(folder), **extra)
    except (CellExecutionError, CellTimeoutError) as exc:
        error = _failure(nb, exc)
    seconds = time.perf_counter() - start
    run = ExecutedNotebook(name, nb.cells[:own], seconds, error)
    if error is None:
        printed = "".join(o.get("text", "") for o in nb.cells[own].outputs)
        line = next(x for x in printed.splitlines() if x.startswith(MARKER))
        run.checks = json.loads(line[len(MARKER) :])
    return run
