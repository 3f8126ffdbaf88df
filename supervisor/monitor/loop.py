"""The monitor's one event loop: epoll over fds plus one-shot timers. It sleeps in
epoll_wait with no timeout unless a timer is armed, so an idle container costs no wake-ups.

Fault containment: an exception out of a handler or timer is reported (`on_fault`) and the
loop goes on. A handler that fails FAULT_LIMIT times in a row without one success is stuck
(level-triggered epoll would call it forever): a non-essential one is dropped from the loop,
an essential one (reaping, pumping output) raises LoopFailed, for the monitor to contain."""
from __future__ import annotations

import heapq
import select
import time
from collections.abc import Callable

Handler = Callable[[int], None]  # called with the epoll event mask

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
FAULT_LIMIT = 5


class LoopFailed(Exception):
    """An essential handler keeps failing: the loop cannot go on."""


def _ignore_fault(what: str, exc: BaseException) -> None:
    pass


class Loop:
    def __init__(self, on_fault: Callable[[str, BaseException], None] = _ignore_fault) -> None:
        self._ep = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self._masks: dict[int, int] = {}
        self._essential: set[int] = set()
        self._faults: dict[int, int] = {}  # fd -> failures in a row
        self.on_fault = on_fault
        self.fault_count = 0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def __getstate__(self) -> dict[str, object]:
        """Pickled for the hand-over to a forked monitor (handoff.py): all but the epoll fd,
        which __setstate__ makes again from the registrations."""
        state = self.__dict__.copy()
        del state["_ep"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._ep = select.epoll()
        for fd, mask in self._masks.items():
            self._ep.register(fd, mask)

    def add(self, fd: int, mask: int, handler: Handler, essential: bool = False) -> None:
        self._handlers[fd] = handler
        self._masks[fd] = mask
        self._faults.pop(fd, None)
        if essential:
            self._essential.add(fd)
        else:
            self._essential.discard(fd)
        self._ep.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        if self._masks.get(fd) != mask:
            self._masks[fd] = mask
            self._ep.modify(fd, mask)

    def remove(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            del self._masks[fd]
            self._essential.discard(fd)
            self._faults.pop(fd, None)
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def wait_set(self) -> tuple[list[tuple[int, int]], float | None]:
        """What `run_once` would wait for: (fd, event mask) pairs, and the first timer's time."""
        return list(self._masks.items()), (self._timers[0][0] if self._timers else None)

    def watching(self, fd: int) -> bool:
        return fd in self._handlers

    def call_later(self, delay: float, cb: Callable[[], None]) -> None:
        # the sequence number keeps timers due at the same time in order, and callbacks uncompared
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, cb))

    def _run_timers(self) -> float:
        """Fire due timers; return how long epoll may sleep: until the next timer, -1 for
        ever, or 0 once one has fired, so that `run` sees what it changed before sleeping."""
        fired = False
        while self._timers:
            when, _, cb = self._timers[0]
            now = time.monotonic()
            if when > now:
                return 0 if fired else when - now
            heapq.heappop(self._timers)
            fired = True
            try:
                cb()
            except Exception as e:
                self._report(f"timer {getattr(cb, '__qualname__', cb)!s}", e)
        return 0 if fired else -1

    def _report(self, what: str, exc: BaseException) -> None:
        self.fault_count += 1
        try:
            self.on_fault(what, exc)
        except Exception:
            pass

    def _handler_failed(self, fd: int, handler: Handler, exc: Exception) -> None:
        what = f"handler {getattr(handler, '__qualname__', handler)!s} (fd {fd})"
        self._report(what, exc)
        n = self._faults.get(fd, 0) + 1
        self._faults[fd] = n
        if n < FAULT_LIMIT or self._handlers.get(fd) is not handler:
            return
        if fd in self._essential:
            raise LoopFailed(f"{what} failed {n} times in a row: {type(exc).__name__}: {exc}")
        self.remove(fd)
        self._report(what, RuntimeError(f"failed {n} times in a row: no longer watched"))

    def run_once(self, max_wait: float = -1) -> None:
        wait = self._run_timers()
        if max_wait >= 0 and (wait < 0 or wait > max_wait):
            wait = max_wait
        for fd, ev in self._ep.poll(wait):
            h = self._handlers.get(fd)
            if h is None:
                continue
            try:
                h(ev)
            except Exception as e:
                self._handler_failed(fd, h, e)
            else:
                if self._faults:
                    self._faults.pop(fd, None)

    def run(self, until: Callable[[], bool]) -> None:
        while not until():
            self.run_once()
