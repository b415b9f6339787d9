"""One LM use at a time, a bounded queue in front of it, and a 503 when it is full."""

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Busy(Exception):
    """The queue is full: retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"The server is busy; retry after {retry_after} s.")
        self.retry_after = retry_after


class Ticket:
    """A place in the queue, given back exactly once (by the stream's end, or by the
    response's background task when the client left before the stream started)."""

    def __init__(self, gate: "LMGate") -> None:
        self.gate, self.released = gate, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate.admitted -= 1


class LMGate:
    """Admits at most 1 + queue_size requests; runs their LM work one at a time."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.admitted = 0  # running + waiting
        self._lock = asyncio.Lock()
        self._durations: deque[float] = deque(maxlen=20)

    def admit(self) -> Ticket:
        """A ticket, or Busy with a Retry-After from recent run times and the queue."""
        if self.admitted >= 1 + self.queue_size:
            mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
            raise Busy(max(1, math.ceil(mean * self.admitted)))
        self.admitted += 1
        return Ticket(self)

    @property
    def waiting(self) -> int:
        return max(self.admitted - int(self._lock.locked()), 0)

    @asynccontextmanager
    async def turn(self, ticket: Ticket) -> AsyncIterator[None]:
        """Hold the LM for the ticket's request; the ticket is given back after."""
        try:
            async with self._lock:
                started = time.perf_counter()
                try:
                    yield
                finally:
                    self._durations.append(time.perf_counter() - started)
        finally:
            ticket.release()
