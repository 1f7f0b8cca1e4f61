"""Parts waiting beyond an operator's queue limit (embedded mode), outside memory.

The messages themselves are durable in the store (ACCEPTED) before they get here;
this only keeps their submit_sm frames, encoded once at accept, in the order they
were accepted, in an unnamed temporary file next to the store: gone when the
process is, and a restart queues the backlog from the store. Taking parts back
costs ~2 us each; reading and encoding them from the store again cost ~15-20 us of
the event loop's time (measured), too much to keep up with the binds.

A record per part: part, total, length of the message id (``<BBH``), the id
(UTF-8), then the frame (its first four bytes are its length).
"""

from __future__ import annotations

import os
import struct
import tempfile
import weakref
from collections.abc import Iterable

from smppd.link.parts import OutboundPart

_HEAD = struct.Struct("<BBH")
_LENGTH = struct.Struct(">I")
READ_SIZE = 256 * 1024  # bytes read at once when taking parts back (a record: < 70 KB)


class SpillFile:
    def __init__(self, directory: str | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix=".smppd-spill-", dir=directory)
        os.unlink(path)  # unnamed: nothing to clean up after a crash
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)
        self._written = 0  # bytes appended so far
        self._read = 0  # bytes taken back so far
        self.parts = 0  # parts waiting

    def __len__(self) -> int:
        return self.parts

    def append(self, parts: Iterable[OutboundPart]) -> None:
        chunks: list[bytes] = []
        count = 0
        for part in parts:
            message_id = part.message_id.encode()
            chunks += (_HEAD.pack(part.part, part.total, len(message_id)), message_id,
                       part.frame)
            count += 1
        data = b"".join(chunks)
        written = os.pwrite(self._fd, data, self._written)
        if written != len(data):
            raise OSError(f"spill file: {written} of {len(data)} bytes written")
        self._written += written
        self.parts += count

    def take(self, count: int) -> list[OutboundPart]:
        """Up to ``count`` parts, oldest first. Once all are taken the file is
        emptied (its disk space freed)."""
        taken: list[OutboundPart] = []
        while len(taken) < count and self._read < self._written:
            size = min(READ_SIZE, self._written - self._read)
            data = os.pread(self._fd, size, self._read)
            used = self._parse(data, count - len(taken), taken)
            if used == 0:  # a record is far shorter than a read: the file is damaged
                raise OSError(f"spill file: no whole record at offset {self._read}")
            self._read += used
        self.parts -= len(taken)
        if self._read == self._written:
            os.ftruncate(self._fd, 0)
            self._read = self._written = 0
        return taken

    @staticmethod
    def _parse(data: bytes, count: int, into: list[OutboundPart]) -> int:
        """Parse whole records from ``data``, at most ``count``; returns bytes used."""
        offset = 0
        end = len(data)
        head = _HEAD.size
        for _ in range(count):
            if offset + head > end:
                break
            part, total, id_length = _HEAD.unpack_from(data, offset)
            frame_at = offset + head + id_length
            if frame_at + 4 > end:
                break
            frame_end = frame_at + _LENGTH.unpack_from(data, frame_at)[0]
            if frame_end > end:
                break
            message_id = data[offset + head:frame_at].decode()
            into.append(OutboundPart(message_id, part, total, data[frame_at:frame_end]))
            offset = frame_end
        return offset

    def close(self) -> None:
        self._close()
