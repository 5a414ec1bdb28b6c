"""The one timing helper: wall seconds of a step, for logs and asset metadata."""

from __future__ import annotations

import time


class Timer:
    """Seconds since it was made; frozen when used as a context manager and the block ends.

    `timer = Timer()` ... `timer.seconds`, or `with Timer() as t: ...` then `t.seconds`.
    """

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._stop: float | None = None

    def __enter__(self) -> Timer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = time.perf_counter()

    @property
    def seconds(self) -> float:
        end = self._stop if self._stop is not None else time.perf_counter()
        return end - self._start

    def rounded(self, digits: int = 3) -> float:
        return round(self.seconds, digits)
