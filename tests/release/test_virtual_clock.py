"""The emulator's discrete-event clock (emulation/interpreter.py, VirtualClock): concurrent waits
overlap, time jumps to the earliest wake-up once every participant waits, and a thread that is
still working holds time still. Executed releases on it: test_release_parallel.py (five rollouts
side by side take one rollout's time)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from emulation.interpreter import CLOCK, VirtualClock, _VirtualEvent, _VirtualThread

FIVE_MINUTES = 300.0


def run_participants(*bodies: Any) -> None:
    threads = [_VirtualThread(target=body, daemon=True) for body in bodies]
    with CLOCK.participating():  # all start at the same virtual moment
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()


def test_two_parallel_five_minute_waits_take_five_minutes() -> None:
    # Times are read inside the sleepers: once they end, a thread another test left waiting may
    # move the shared clock on.
    start = CLOCK.now()
    woke: list[float] = []

    def five_minutes() -> None:
        CLOCK.sleep(FIVE_MINUTES)
        woke.append(CLOCK.now() - start)

    run_participants(five_minutes, five_minutes)
    assert woke == pytest.approx([FIVE_MINUTES, FIVE_MINUTES])


def test_time_jumps_to_the_earliest_wake_up_and_each_sleeper_wakes_at_its_own_time() -> None:
    start = CLOCK.now()
    woke: dict[str, float] = {}

    def sleeper(name: str, *waits: float) -> Any:
        def body() -> None:
            for seconds in waits:
                CLOCK.sleep(seconds)
            woke[name] = CLOCK.now() - start

        return body

    run_participants(sleeper("long", 300), sleeper("polls", 60, 60, 60), sleeper("short", 10))
    assert woke == pytest.approx({"long": 300, "polls": 180, "short": 10})


def test_a_working_participant_holds_time_still(monkeypatch: pytest.MonkeyPatch) -> None:
    # One thread sleeps 5 minutes while another is still busy (it waits on a real event the test
    # sets): time may not move until the busy one waits too, however long the work takes (the
    # stall guard, shortened here, must not jump past running work: a slow cold start once timed
    # out an emulated execution that way).
    monkeypatch.setattr(VirtualClock, "STALL_SECONDS", 0.02)
    busy = threading.Event()
    release = threading.Event()
    seen: list[float] = []
    start = CLOCK.now()

    def worker() -> None:
        busy.set()
        release.wait(30)  # real work, invisible to the clock
        seen.append(CLOCK.now() - start)

    slept: list[float] = []

    def sleeper() -> None:
        CLOCK.sleep(FIVE_MINUTES)
        slept.append(CLOCK.now() - start)

    threads = [_VirtualThread(target=worker, daemon=True), _VirtualThread(target=sleeper, daemon=True)]
    with CLOCK.participating():
        for thread in threads:
            thread.start()
    assert busy.wait(30)
    threading.Event().wait(0.2)  # the sleeper has registered by now
    assert CLOCK.now() == start
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert seen == [0.0] and slept == pytest.approx([FIVE_MINUTES])


def test_an_event_set_in_time_ends_the_wait_without_moving_time() -> None:
    event = _VirtualEvent()
    results: list[tuple[bool, float]] = []
    start = CLOCK.now()
    run_participants(lambda: results.append((event.wait(FIVE_MINUTES), CLOCK.now() - start)), event.set)
    assert results == [(True, 0.0)]


def test_an_event_never_set_times_out_in_virtual_time() -> None:
    event = _VirtualEvent()
    results: list[tuple[bool, float]] = []
    start = CLOCK.now()
    run_participants(lambda: results.append((event.wait(FIVE_MINUTES), CLOCK.now() - start)))
    assert [timed_out for timed_out, _ in results] == [False] and results[0][1] == pytest.approx(FIVE_MINUTES)


def test_a_thread_that_is_not_a_participant_may_sleep() -> None:
    clock = VirtualClock()
    clock.sleep(42)
    assert clock.now() == 42 and clock.forced_jumps == 0


def test_a_wait_across_a_reset_keeps_its_remaining_time_and_time_keeps_moving() -> None:
    # reset() (each test's Interpreter.reset) moves a waiter's wake-up back with time; a waiter that
    # compared time with its wake-up from before the reset never woke, and no other wait could
    # move time past it: the next test that waited hung.
    clock = VirtualClock()
    clock.sleep(50)
    woke: list[float] = []

    def sleeper() -> None:
        clock.thread_running()
        try:
            clock.sleep(100)  # wakes at 150, or at 100 after the reset below
            woke.append(clock.now())
        finally:
            clock.thread_ended()

    with clock.participating():  # time holds still while this thread works
        clock.thread_starting()
        threading.Thread(target=sleeper, daemon=True).start()
        while not clock._waiters:
            threading.Event().wait(0.001)
        clock.reset()
    after = threading.Thread(target=clock.sleep, args=(200,), daemon=True)  # the test's own wait
    after.start()
    after.join(30)
    assert not after.is_alive(), "time stopped at the moved wake-up"
    # The sleeper wakes 100 s after the reset; the later wait of 200 s ends 200 s after that.
    assert woke == [100.0] and clock.now() == 300.0 and clock.forced_jumps == 0
