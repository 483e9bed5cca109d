"""One execution of each notebook per session, shared by every test that inspects it.

``notebook_runs.get(name, checks)`` executes ``notebooks/<name>`` the first time it is asked
for (fresh kernel, cwd ``notebooks/``, 600 s per cell) and returns the same result afterwards.
Each run's wall time is printed (``pytest -s``) and written to
``test-artifacts/notebooks/timings.json`` (``$TRAIT_LAB_ARTIFACTS`` overrides the folder);
times are recorded, never asserted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import pytest

from tests.notebooks.runner import REPO, ExecutedNotebook, execute


class NotebookRuns:
    """Executes each notebook at most once; asking again returns the first result."""

    def __init__(self) -> None:
        self._runs: dict[str, tuple[dict[str, str], ExecutedNotebook]] = {}
        base = os.environ.get("TRAIT_LAB_ARTIFACTS", REPO / "test-artifacts")
        self.timings = os.path.join(base, "notebooks", "timings.json")

    def get(self, name: str, checks: Mapping[str, str]) -> ExecutedNotebook:
        """The execution of ``name`` with ``checks`` evaluated after its last cell."""
        if name in self._runs:
            first, run = self._runs[name]
            if first != dict(checks):
                raise ValueError(f"{name} already ran with other checks; ask once per notebook")
            return run
        run = execute(name, checks)
        self._runs[name] = (dict(checks), run)
        status = "ok" if run.error is None else "FAILED"
        print(f"\n{name}: executed in {run.seconds:.0f} s ({status})")
        self._record(name, run)
        return run

    def ran(self, name: str) -> bool:
        """Whether ``name`` executed without error earlier in this session."""
        return name in self._runs and self._runs[name][1].error is None

    def _record(self, name: str, run: ExecutedNotebook) -> None:
        os.makedirs(os.path.dirname(self.timings), exist_ok=True)
        try:
            with open(self.timings) as f:
                table = json.load(f)
        except (OSError, ValueError):
            table = {}
        slowest = sorted(run.cell_seconds().items(), key=lambda item: -item[1])[:3]
        table[name] = {
            "seconds": round(run.seconds, 1),
            "ok": run.error is None,
            "slowest cells (index: seconds)": {str(i): round(t, 1) for i, t in slowest},
        }
        with open(self.timings, "w") as f:
            json.dump(table, f, indent=2)


@pytest.fixture(scope="session")
def notebook_runs() -> NotebookRuns:
    """The session's notebook executions (see the module docstring)."""
    return NotebookRuns()
