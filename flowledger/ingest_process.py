"""Reading and validating a large input in a second process, while this one appends.

An append of a file does two kinds of work per event: reading, validating, redacting and
encoding it (:mod:`flowledger.ingest`), and checking it against the stored runs and
writing it (:class:`~flowledger.store.log.EventLog`). The first needs nothing from the
store, so a forked child does it while this process appends the chunk before: the two use
two cores. The child sends each chunk's canonical JSON; this process decodes it again
(a fraction of what validating costs) and never sees an unvalidated event.

Nothing changes for the user: the events, their order, the problems and their lines are
those of :func:`flowledger.ingest.candidates`, and the append stays one transaction in
this process (the child never touches the store), so a failed child, like a bad line,
stores nothing. Where a fork is not possible or not worth it (no ``os.fork``, threads
running, a small input) the input is read here, as before.
"""

from __future__ import annotations

import gc
import io
import mmap
import os
import pickle
import signal
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import IO, Any

import orjson

from flowledger.domain.vocabulary import stream_of
from flowledger.errors import FlowledgerError, InvalidInput, Problem
from flowledger.ingest import IngestOptions, candidates, read_items
from flowledger.store.log import Candidate

FORK_FROM_BYTES = 1 << 20
"""Inputs at least this large (or of unknown size: a pipe) are read in a second process."""

RING_BYTES = 64 << 20
"""The memory the two processes share for chunks in flight: how far the reader may run ahead."""
FIRST_CHUNK = 1_000
"""Events in the child's first chunk (each next one twice as many, up to the options' size)."""

_NOTICE = struct.Struct("<BQQ")  # where (ring or pipe), start in the ring, size
_IN_RING, _IN_PIPE = 0, 1


class ReaderFailed(FlowledgerError):
    """The process reading the input ended before the input did (nothing was stored)."""


def worth_forking(stream: IO[bytes]) -> bool:
    """Whether to read ``stream`` in a second process: it is large, and a fork is safe here."""
    # A fork copies only the calling thread: another thread's locks would stay held.
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    size = _remaining(stream)
    return size is None or size >= FORK_FROM_BYTES


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left to read in ``stream`` (None: unknown, e.g. a pipe)."""
    try:
        if isinstance(stream, io.BytesIO):
            return stream.getbuffer().nbytes - stream.tell()
        if not stream.seekable():
            return None
        return os.fstat(stream.fileno()).st_size - stream.tell()
    except (OSError, ValueError, AttributeError):
        return None


def forked_candidates(
    stream: IO[bytes],
    options: IngestOptions,
    rejected: list[Problem],
    progress: Callable[[int], None] | None = None,
) -> Iterator[list[Candidate]]:
    """What :func:`~flowledger.ingest.candidates` yields for ``stream``, read by a child.

    Close the generator (or exhaust it) to end and reap the child. ``stream`` belongs to
    the child from the first ``next``: this process must not read it.
    """
    ring = mmap.mmap(-1, RING_BYTES)  # shared with the child across the fork
    notices_r, notices_w = os.pipe()
    acks_r, acks_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(notices_r)
        os.close(acks_w)
        _child(stream, options, _Sender(ring, notices_w, acks_r))
    os.close(notices_w)
    os.close(acks_r)
    done = False
    try:
        with open(notices_r, "rb") as notices:
            loads = orjson.loads
            while True:
                kind, read, payload, problems = _receive(notices, ring, acks_w)
                rejected.extend(problems)
                if progress and read:
                    progress(read)
                if kind == "end":
                    done = True
                    return
                if kind == "error":
                    raise ReaderFailed(f"reading the input failed: {payload}; nothing was stored")
                if kind == "unreadable":
                    done = True  # the child has sent its last frame and exits
                    raise InvalidInput(rejected[:])
                chunk = []
                for line, index, encoded, source in payload:
                    body = loads(encoded)
                    chunk.append(Candidate(line, body["id"], body["type"], stream_of(body), body, encoded, source, index))
                yield chunk
    finally:
        if not done:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
        os.close(acks_w)
        ring.close()


def _receive(notices: IO[bytes], ring: mmap.mmap, acks: int) -> tuple[str, int, Any, list[Problem]]:
    """The child's next frame: (kind, bytes read since the last, payload, new problems)."""
    head = notices.read(_NOTICE.size)
    if len(head) < _NOTICE.size:
        raise ReaderFailed("the process reading the input ended before the input did; nothing was stored")
    where, start, size = _NOTICE.unpack(head)
    if where == _IN_RING:
        frame = ring[start : start + size]
        try:
            os.write(acks, b".")  # its place in the ring may be written again
        except BrokenPipeError:
            pass  # the child is gone: the next notice says so
    else:
        frame = notices.read(size)
        if len(frame) < size:
            raise ReaderFailed("the process reading the input ended before the input did; nothing was stored")
    return pickle.loads(frame)  # type: ignore[no-any-return]


class _Sender:
    """The child's end: frames go through the shared ring, a notice of each through a pipe.

    A pipe alone would hold only one part of a chunk's megabytes at a time, and this
    process would wait for the parent to read each part; the ring lets it run ahead.
    """

    def __init__(self, ring: mmap.mmap, notices: int, acks: int) -> None:
        self.ring = ring
        self.notices = open(notices, "wb")
        self.acks = acks
        self.at = 0
        self.unread: deque[tuple[int, int]] = deque()  # (start, end) of frames the parent has not taken

    def send(self, frame: bytes) -> None:
        """Hand one frame to the parent (waiting for room in the ring if need be)."""
        size = len(frame)
        if size > len(self.ring) // 2:
            self.notices.write(_NOTICE.pack(_IN_PIPE, 0, size))
            self.notices.write(frame)
        else:
            start = self.at if self.at + size <= len(self.ring) else 0
            end = start + size
            while any(s < end and start < e for s, e in self.unread):
                # The parent takes frames in order: each byte it sends back frees the oldest.
                if not os.read(self.acks, 1):
                    raise BrokenPipeError
                self.unread.popleft()
            self.ring[start:end] = frame
            self.unread.append((start, end))
            self.at = end
            self.notices.write(_NOTICE.pack(_IN_RING, start, size))
        self.notices.flush()


def _child(stream: IO[bytes], options: IngestOptions, sender: _Sender) -> None:
    """Read, validate and send the input's chunks, then exit (no cleanup of the parent's state)."""
    code = 0
    try:
        # Ctrl-C is the parent's to handle: it ends this process when it must.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Nothing it makes is in a reference cycle, and what it makes is soon sent and dropped.
        gc.disable()
        read = [0]
        rejected: list[Problem] = []

        def count(n: int) -> None:
            read[0] += n

        def send(kind: str, payload: Any) -> None:
            sender.send(pickle.dumps((kind, read[0], payload, rejected[:]), protocol=pickle.HIGHEST_PROTOCOL))
            read[0] = 0
            rejected.clear()

        items = read_items(stream, options.max_event_bytes, count)
        # The first chunk is small and the next ones twice as large each, up to the
        # options' size: the parent, which waits for the first, starts appending soon.
        small = replace(options, chunk_size=min(FIRST_CHUNK, options.chunk_size))
        wanted = small.chunk_size
        rows: list[tuple[int | None, int | None, bytes, str | None]] = []
        for chunk in candidates(items, small, rejected):
            rows.extend((c.line, c.index, c.encoded, c.source) for c in chunk)
            if len(rows) >= wanted:
                send("chunk", rows)
                rows, wanted = [], min(2 * wanted, options.chunk_size)
        if rows:
            send("chunk", rows)
        send("end", None)
    except BrokenPipeError:
        code = 1  # the parent is gone or stopped reading: nothing to tell
    except InvalidInput:
        # The input can be read no further: its problems so far say where (the frame
        # carries those not sent yet), as they would read here.
        code = 1
        try:
            send("unreadable", None)
        except BaseException:  # noqa: BLE001
            pass
    except BaseException as e:  # noqa: BLE001 - said to the parent, which turns it into an error
        code = 1
        try:
            sender.send(pickle.dumps(("error", 0, f"{type(e).__name__}: {e}", [])))
        except BaseException:  # noqa: BLE001
            pass
    finally:
        # Not sys.exit: the parent's open connections, files and atexit hooks are its own.
        os._exit(code)
