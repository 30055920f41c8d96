"""The priority gate: routine lanes hold back while a critical lane has a batch in hand."""

from __future__ import annotations

import threading


class PriorityGate:
    """Routine lanes hold back while a critical lane has a batch in hand."""

    def __init__(self) -> None:
        self._busy = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._busy += 1

    def leave(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def wait_clear(self, timeout: float = 0.5) -> None:
        with self._idle:
            if self._busy:
                self._idle.wait(timeout)
