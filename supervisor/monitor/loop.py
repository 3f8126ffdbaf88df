"""The monitor's one event loop: epoll over fds plus one-shot timers. It sleeps in
epoll_wait with no timeout unless a timer is armed, so an idle container costs no wake-ups."""
from __future__ import annotations

import heapq
import itertools
import select
import time
from collections.abc import Callable

Handler = Callable[[int], None]  # called with the epoll event mask

READ = select.EPOLLIN
WRITE = select.EPOLLOUT


class Loop:
    def __init__(self) -> None:
        self._ep = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self._masks: dict[int, int] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()

    def add(self, fd: int, mask: int, handler: Handler) -> None:
        self._handlers[fd] = handler
        self._masks[fd] = mask
        self._ep.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        if self._masks.get(fd) != mask:
            self._masks[fd] = mask
            self._ep.modify(fd, mask)

    def remove(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            del self._masks[fd]
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def watching(self, fd: int) -> bool:
        return fd in self._handlers

    def call_later(self, delay: float, cb: Callable[[], None]) -> int:
        seq = next(self._seq)
        heapq.heappush(self._timers, (time.monotonic() + delay, seq, cb))
        return seq

    def cancel(self, timer: int) -> None:
        self._cancelled.add(timer)

    def _run_timers(self) -> float:
        """Fire due timers; return seconds until the next one, or -1 for none."""
        while self._timers:
            when, seq, cb = self._timers[0]
            if seq in self._cancelled:
                heapq.heappop(self._timers)
                self._cancelled.discard(seq)
                continue
            now = time.monotonic()
            if when > now:
                return when - now
            heapq.heappop(self._timers)
            cb()
        return -1

    def run_once(self, max_wait: float = -1) -> None:
        wait = self._run_timers()
        if max_wait >= 0 and (wait < 0 or wait > max_wait):
            wait = max_wait
        for fd, ev in self._ep.poll(wait):
            h = self._handlers.get(fd)
            if h is not None:
                h(ev)

    def run(self, until: Callable[[], bool]) -> None:
        while not until():
            self.run_once()
