"""A background worker that runs only the latest request: debounced, cancellable, one at a time.

A slider fires many changes while it is dragged. Each ``submit`` replaces the pending request
and cancels the one running; after ``debounce`` seconds without a newer request the worker
thread runs it. Only one job touches the model at a time (hooks on one model must not
interleave), and the kernel's own thread is never blocked, so the notebook stays responsive.

Example:
    >>> import threading
    >>> seen = []
    >>> runner = LatestRunner(lambda req, cancel: seen.append(req), debounce=0.01)
    >>> for value in range(5):
    ...     runner.submit(value)
    >>> runner.wait(timeout=5)
    True
    >>> seen
    [4]
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

Job = Callable[[Any, threading.Event], None]


class LatestRunner:
    """Run ``job(request, cancel)`` on a daemon thread for the most recent request only.

    Args:
        job: does the work; it should return soon after ``cancel`` is set.
        debounce: seconds a request must stay the latest before it starts.
        on_error: called with the exception when ``job`` raises (the worker keeps running).
    """

    def __init__(
        self,
        job: Job,
        debounce: float = 0.15,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not isinstance(debounce, int | float) or not 0 <= debounce < math.inf:
            raise ValueError(
                f"debounce must be >= 0 seconds (a finite number), got {debounce!r}; pass e.g. "
                "0.15 (NaN or inf would keep every request waiting)"
            )
        self._job = job
        self.debounce = debounce
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: tuple[Any, float] | None = None
        self._cancel = threading.Event()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    def submit(self, request: Any) -> None:
        """Make ``request`` the next job and cancel the running one."""
        with self._cond:
            if self._closed:
                raise RuntimeError("this runner was closed; create a new one")
            self._pending = (request, time.monotonic() + self.debounce)
            self._cancel.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="tl-runner")
                self._thread.start()
            self._cond.notify_all()

    def cancel(self) -> None:
        """Drop the pending request and stop the running one."""
        with self._cond:
            self._pending = None
            self._cancel.set()
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """Whether a request is pending or running."""
        with self._cond:
            return self._busy or self._pending is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; ``False`` if ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy or self._pending is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Cancel everything and wait (up to ``timeout`` s) for the worker thread to end, so
        nothing of this runner still uses the model when ``close`` returns."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cancel.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next(self) -> tuple[Any, threading.Event] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._pending is None:
                    self._cond.wait()
                    continue
                request, due = self._pending
                left = due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._pending = None
                self._cancel = threading.Event()
                self._busy = True
                return request, self._cancel

    def _loop(self) -> None:
        while (item := self._next()) is not None:
            request, cancel = item
            try:
                self._job(request, cancel)
            except BaseException as exc:
                self.last_error = exc
                if self._on_error is not None:
                    self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
