"""log_progress: a logger's INFO lines shown while inside, everything restored afterwards."""

from __future__ import annotations

import io
import logging

import pytest

from trait_lab.core import log_progress


def test_info_lines_shown_inside_only_with_elapsed_seconds() -> None:
    log, out = logging.getLogger("trait_lab.test_progress"), io.StringIO()
    log.setLevel(logging.WARNING)
    log.info("before")
    with log_progress("trait_lab.test_progress", stream=out):
        log.info("round %d", 1)
        log.debug("hidden")
    log.info("after")
    assert out.getvalue().splitlines()[0].endswith("] round 1")
    assert out.getvalue().startswith("[") and "s] " in out.getvalue()
    assert len(out.getvalue().splitlines()) == 1
    assert log.level == logging.WARNING and not log.handlers


def test_restored_when_the_step_raises() -> None:
    log = logging.getLogger("trait_lab.test_progress_raises")
    with pytest.raises(RuntimeError), log_progress(log.name, stream=io.StringIO()):
        raise RuntimeError("boom")
    assert log.level == logging.NOTSET and not log.handlers


def test_no_logger_names_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one logger name"), log_progress():
        pass
