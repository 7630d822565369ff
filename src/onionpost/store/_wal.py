"""The write-ahead log's framing, checked before the store trusts the log.

SQLCipher authenticates every page image, in the database file and in the
WAL alike (:mod:`onionpost.store._database`). The WAL's *framing* is SQLite's and
is not authenticated (https://sqlite.org/fileformat2.html#walformat)::

    header, 32 bytes (big-endian u32s)
       0 magic 0x377f0682 (checksums over little-endian words) or 0x377f0683 (big-endian)
       4 format version 3007000      8 page size        12 checkpoint sequence
      16 salt-1   20 salt-2          24 checksum-1      28 checksum-2 (of bytes 0..24)
    then frames of 24 + page-size bytes:
       0 page number                 4 database size in pages after a commit, else 0
       8 salt-1   12 salt-2 (the header's, in a frame of this log)
      16 checksum-1   20 checksum-2  (the previous frame's, or the header's,
                                      continued over bytes 0..8 and the page)

When the log is opened SQLite reads frames while their salts and checksums
hold, and stops at the first that fails, silently: one byte changed in the
header or in a frame would drop that frame and every commit after it, as if
they had never been made. A crash (or a power cut before the fsync of a
commit) leaves that shape only at the log's end: the transaction being
written cut short, then frames of an earlier log that the new one has not
overwritten yet. So :func:`parse` refuses a log whose header does not check
out, and a log in which SQLite would stop at a frame that is followed by a
later *commit* of the same log that would have been read had that frame been
intact: that is, the chain resumed after it (from the checksum the frame
holds, or from the one it should hold) reaches a commit frame. It also hands
back the page images SQLite will read from the log (the frames up to the
last commit of the unbroken chain), so that the store checks their
authentication before SQLite reads any (:mod:`onionpost.store._database`).

(A power cut can in principle leave a frame of an unsynced transaction torn
while a later one is intact, if the disk wrote them out of order; that log
is refused too. The message says which frame; cutting the WAL file at that
frame is what SQLite would have done.)

What no check of a single log can tell from a crash, and so is not refused:
a log cut short after any of its commits, or deleted, and a change within
its last transaction. Both put back the state of an earlier commit (since
the last checkpoint), which is the rollback of storage.md §7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = ["HEADER_LEN", "Log", "checksum", "parse"]

HEADER_LEN: Final = 32
FRAME_HEADER_LEN: Final = 24
_MAGIC_LE: Final = 0x377F0682
_MAGIC_BE: Final = 0x377F0683
_VERSION: Final = 3007000
_MASK: Final = 0xFFFFFFFF


def checksum(data: bytes, s0: int, s1: int, *, big: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), continued from (s0, s1)."""
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


@dataclass(frozen=True, slots=True)
class Log:
    """What SQLite will make of a WAL file, and whether a crash could have left it."""

    problem: str | None  # None: a log a crash could have left
    pages: list[tuple[int, bytes]]  # (page number, image) of each frame SQLite will read
    #: Each commit SQLite will read, in order: (frames up to and including its
    #: commit frame, the database's size in pages after it, the byte offset
    #: where its commit frame ends).
    commits: list[tuple[int, int, int]] = field(default_factory=list)


def parse(data: bytes, page_size: int) -> Log:
    """Check ``data`` (a whole WAL file); see the module doc."""
    if not data:
        return Log(None, [])
    if len(data) < HEADER_LEN:
        return Log(f"it is {len(data)} bytes, shorter than a WAL header", [])
    magic, version, size, _sequence, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in (_MAGIC_LE, _MAGIC_BE) or version != _VERSION:
        return Log("its header is not a WAL header", [])
    big = magic == _MAGIC_BE
    if checksum(data[:24], 0, 0, big=big) != (c1, c2):
        return Log("its header's checksum does not match", [])
    if size != page_size:
        return Log(f"its page size is {size}, not {page_size}", [])
    frame_len = FRAME_HEADER_LEN + page_size
    count = (len(data) - HEADER_LEN) // frame_len  # a torn last frame is not one

    def frame(i: int) -> bytes:
        start = HEADER_LEN + i * frame_len
        return data[start : start + frame_len]

    def continued(f: bytes, running: tuple[int, int]) -> tuple[int, int]:
        return checksum(f[FRAME_HEADER_LEN:], *checksum(f[:8], *running, big=big), big=big)

    def follows(f: bytes, running: tuple[int, int]) -> tuple[int, int] | None:
        """The running checksum after ``f`` if ``f`` continues the log, else None."""
        f_salt1, f_salt2, k1, k2 = struct.unpack(">4I", f[8:24])
        if (f_salt1, f_salt2) != (salt1, salt2):
            return None
        after = continued(f, running)
        return after if after == (k1, k2) else None

    def commit(f: bytes) -> bool:
        (size_after,) = struct.unpack(">I", f[4:8])
        return bool(size_after)

    running = (c1, c2)
    stop = 0
    read = 0  # frames up to the last commit: what SQLite reads
    commits: list[tuple[int, int, int]] = []
    while stop < count:
        after = follows(frame(stop), running)
        if after is None:
            break
        running = after
        stop += 1
        if commit(frame(stop - 1)):
            read = stop
            (size_after,) = struct.unpack(">I", frame(stop - 1)[4:8])
            commits.append((stop, size_after, HEADER_LEN + stop * frame_len))
    pages = [
        (struct.unpack(">I", frame(i)[:4])[0], frame(i)[FRAME_HEADER_LEN:]) for i in range(read)
    ]
    if stop == count:
        return Log(None, pages, commits)
    # SQLite stops reading at frame `stop`. Resume after it from the checksum
    # the frame holds (its page or header was changed) and from the one it
    # should hold (its checksum or salt was changed).
    broken = frame(stop)
    held = struct.unpack(">2I", broken[16:24])
    for start in {held, continued(broken, running)}:
        resumed = start
        for later in range(stop + 1, count):
            f = frame(later)
            after = follows(f, resumed)
            if after is None:
                break
            resumed = after
            if commit(f):
                return Log(f"frame {stop} was changed, and commits after it would be dropped", [])
    return Log(None, pages, commits)
