"""Where a process's memory goes, sampled from inside it: the soak's probe.

::

    python -m onionpost.testing.memprobe OUT.jsonl SECONDS [--trace] -- --home H daemon

runs ``onionpost --home H daemon`` in this process with a sampler thread that
appends one JSON line to ``OUT.jsonl`` every ``SECONDS``: the kernel's view
(``VmRSS`` and its anonymous, file and shared parts, threads), glibc's
(``mallinfo2``: bytes in use, free in the heap, mapped), SQLite's own
allocator (``sqlite3_memory_used`` of the SQLCipher library the store uses),
Python's (allocated blocks, objects the collector tracks) and, every tenth
sample, the twenty most numerous object types. With ``--trace``,
``tracemalloc`` runs and each sample carries the fifteen source lines whose
traced memory grew most since the first sample (it costs time and memory of
its own: a run with it measures where, not how much).

RSS growth with Python's blocks flat points below Python (SQLite, OpenSSL,
the allocator keeping freed memory); blocks or a type's count rising with it
point at what holds them. The thread only reads, and is a daemon thread: it
ends with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.util
import json
import runpy
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any, Final

__all__ = ["main", "sample"]

_TYPES_EVERY: Final = 10
_TOP_TYPES: Final = 20
_TOP_LINES: Final = 15
_MAX_SAMPLES: Final = 100_000


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def _sqlite_used() -> Any:
    # The store's driver library, found without importing it here (the store
    # is the one place that imports it): its allocator's counter.
    spec = importlib.util.find_spec("sqlcipher3._sqlite3")
    if spec is None or spec.origin is None:
        return None
    used = ctypes.CDLL(spec.origin).sqlite3_memory_used
    used.restype = ctypes.c_int64
    return used


def _status() -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"}:
            found[key] = int(value.split()[0])
    return found


def sample(n: int, libc: Any, sqlite_used: Any, first: Any) -> dict[str, Any]:
    """One line: see the module docstring."""
    row: dict[str, Any] = {"n": n, "t": round(time.monotonic(), 1), **_status()}
    if libc is not None and hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
        fields = ("arena", "hblkhd", "uordblks", "fordblks")
        row["malloc"] = {k: getattr(info, k) // 1024 for k in fields}
    if sqlite_used is not None:
        row["sqlite_kib"] = sqlite_used() // 1024
    row["py_blocks"] = sys.getallocatedblocks()
    row["gc_objects"] = len(gc.get_objects())
    if n % _TYPES_EVERY == 0:
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        row["types"] = counts.most_common(_TOP_TYPES)
    if first is not None:
        now = tracemalloc.take_snapshot()
        row["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
        row["grew"] = [
            [str(stat.traceback[0]), stat.size_diff // 1024, stat.count_diff]
            for stat in now.compare_to(first, "lineno")[:_TOP_LINES]
        ]
    return row


def _sampler(out: Path, every: float, trace: bool) -> None:
    libc, sqlite_used = _libc(), _sqlite_used()
    first = tracemalloc.take_snapshot() if trace else None
    with out.open("a", encoding="utf-8") as f:
        for n in range(_MAX_SAMPLES):
            f.write(json.dumps(sample(n, libc, sqlite_used, first)) + "\n")
            f.flush()
            time.sleep(every)


def main(argv: list[str]) -> None:
    """``OUT SECONDS [--trace] -- ARGS``: the CLI with ARGS under the probe."""
    split = argv.index("--")
    head, rest = argv[:split], argv[split + 1 :]
    out, every, trace = Path(head[0]), float(head[1]), "--trace" in head[2:]
    if trace:
        tracemalloc.start(1)
    threading.Thread(target=_sampler, args=(out, every, trace), daemon=True).start()
    sys.argv = ["onionpost", *rest]
    runpy.run_module("onionpost", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
