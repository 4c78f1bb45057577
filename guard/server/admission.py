"""A bound on concurrent CPU work in request handlers (verify, byContent): `workers` run at
once, `waiting` more may wait, and anything beyond is refused with 503 + Retry-After at once,
so a burst costs queue slots rather than memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
from fastapi import HTTPException

T = TypeVar("T")


class Admission:
    def __init__(self, workers: int, waiting: int, retry_after: int) -> None:
        self._limiter = anyio.CapacityLimiter(workers)
        self._capacity = workers + waiting
        self._inside = 0
        self._retry_after = retry_after

    async def run(self, fn: Callable[[], T]) -> T:
        if self._inside >= self._capacity:
            raise HTTPException(
                503,
                "the server is busy; try again shortly",
                headers={"Retry-After": str(self._retry_after)},
            )
        self._inside += 1  # the event loop is one thread: no lock needed
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        finally:
            self._inside -= 1
