"""Interleaved side-by-side measurement, because these machines are noisy."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

#: ``ONIONPOST_BENCH_SMOKE=1``: every count a hundredth (at least 2), one round
#: each: the test suite runs each bench that needs no tor this way, to know it
#: still runs; its figures mean nothing.
SMOKE = os.environ.get("ONIONPOST_BENCH_SMOKE") == "1"


def scaled(count: int) -> int:
    """``count``, or in the smoke form a hundredth of it (at least 2)."""
    return max(2, count // 100) if SMOKE else count


def rate(fn: Callable[[], object], count: int) -> float:
    """Calls per second of ``fn`` over ``count`` calls."""
    count = scaled(count)
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def compare(
    ours: Callable[[], float], peer: Callable[[], float], rounds: int = 7
) -> tuple[float, float]:
    """Medians of ``rounds`` interleaved measurements, alternating which goes first."""
    a: list[float] = []
    b: list[float] = []
    for i in range(1 if SMOKE else rounds):
        if i % 2 == 0:
            a.append(ours())
            b.append(peer())
        else:
            b.append(peer())
            a.append(ours())
    return statistics.median(a), statistics.median(b)


def line(name: str, ours: float, peer: float, unit: str = "", digits: int = 1) -> str:
    return (
        f"{name}: ours={ours:.{digits}f}{unit} peer={peer:.{digits}f}{unit} ratio={ours / peer:.2f}"
    )


def fact(name: str, value: float, unit: str) -> str:
    return f"{name}: {value:.3f}{unit}"
