"""Deadlines for many concurrent tasks, watched by one task instead of a timer each.

``asyncio.timeout`` arms a timer per use; moving it (the body's limit, then the
handler's) arms another: about 8 us of every request on uvloop, more than the rest of
the request's limits together.  Here each deadline is an entry in a dict, and one
watcher task, running only while there are deadlines, wakes every ``TICK`` seconds and
cancels the tasks whose deadline has passed.  A deadline so fires up to ``TICK`` late,
which is nothing beside request timeouts of seconds.  The task learns that its own
deadline cancelled it, not someone else, as ``asyncio.timeout`` does: ``expired`` is set
and ``uncancel`` takes the cancellation back.
"""

from __future__ import annotations

import asyncio

TICK = 0.05


class Deadline:
    """One task's deadline (``due``, on the loop's clock), which may be moved."""

    __slots__ = ("_cancelling", "due", "expired", "task")

    def __init__(self, task: asyncio.Task[object], due: float) -> None:
        self.task = task
        self.due = due
        self.expired = False
        self._cancelling = task.cancelling()

    def cancelled_the_task(self) -> bool:
        """After ``CancelledError``: whether this deadline alone cancelled the task (taken back if so)."""
        return self.expired and self.task.uncancel() <= self._cancelling


class Deadlines:
    def __init__(self) -> None:
        self._running: dict[asyncio.Task[object], Deadline] = {}
        self._watcher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._running)

    def start(self, due: float) -> Deadline:
        """A deadline for the current task; ``finish`` it when the work is done."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is for a task")
        deadline = self._running[task] = Deadline(task, due)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="request-deadlines")
        return deadline

    def finish(self, deadline: Deadline) -> None:
        self._running.pop(deadline.task, None)

    def expire_all(self) -> None:
        """Cancel every task that has a deadline, now."""
        for deadline in self._running.values():
            _expire(deadline)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._running:
                await asyncio.sleep(TICK)
                now = loop.time()
                for deadline in list(self._running.values()):
                    if deadline.due <= now:
                        _expire(deadline)
        finally:
            self._watcher = None


def _expire(deadline: Deadline) -> None:
    if not deadline.expired:
        deadline.expired = True
        deadline.task.cancel()
