"""Request deadlines: one watcher task cancels what is late, and owns up to its cancellations only."""

from __future__ import annotations

import asyncio

from {{ cookiecutter.package_name }}.chassis.deadlines import TICK, Deadlines


async def sleep_under(deadlines: Deadlines, seconds_left: float) -> bool | None:
    """Sleep past ``seconds_left``; whether the deadline cancelled the sleep (None: not cancelled)."""
    loop = asyncio.get_running_loop()
    deadline = deadlines.start(loop.time() + seconds_left)
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        if deadline.cancelled_the_task():
            return True
        raise
    finally:
        deadlines.finish(deadline)
    return None


def watcher_running() -> bool:
    return any(task.get_name() == "request-deadlines" for task in asyncio.all_tasks())


async def test_a_late_task_is_cancelled_by_its_deadline_and_told_so() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(sleep_under(deadlines, 0.1), timeout=5) is True
    assert 0.1 <= loop.time() - started < 2, "on time, give or take a tick (and a busy machine)"
    assert len(deadlines) == 0
    await asyncio.sleep(2 * TICK)
    assert not watcher_running()  # it runs only while there are deadlines


async def test_a_cancellation_from_elsewhere_is_not_taken_for_the_deadlines() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(sleep_under(deadlines, 60))
    await asyncio.sleep(TICK)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task}
    assert task.cancelled()


async def test_expiring_all_cancels_every_task_at_once() -> None:
    deadlines = Deadlines()
    tasks = [asyncio.create_task(sleep_under(deadlines, 60)) for _ in range(3)]
    await asyncio.sleep(0)
    assert len(deadlines) == 3
    deadlines.expire_all()
    for _ in range(3):  # a few steps of the loop, no watcher tick
        await asyncio.sleep(0)
    assert [task.result() for task in tasks] == [True, True, True]
    assert len(deadlines) == 0
