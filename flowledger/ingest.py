"""Reading an input (JSON Lines or one JSON array) into validated, redacted candidates.

This is the first stage of every way in: bytes → JSON → vocabulary → redaction → a
:class:`~flowledger.store.log.Candidate` with its canonical JSON. Problems are collected with the
line they start on, never raised one at a time, so a user sees all of them at once (only
a JSON array that cannot be read to its end stops the reading there).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from flowledger.domain.redaction import Redactor
from flowledger.domain.vocabulary import EventInvalid, stream_of, validate_event
from flowledger.errors import InvalidInput, Problem
from flowledger.store.log import Candidate

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
"""Events larger than this (as JSON) are refused, unless configured otherwise."""
DEFAULT_CHUNK_SIZE = 10_000
"""Events checked and written per statement batch."""


@dataclass
class IngestOptions:
    """How an input is read."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    """The largest event accepted, in bytes of JSON."""
    redactor: Redactor = field(default_factory=Redactor)
    """What removes secrets before anything is stored."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """How many events go to the store at a time."""
    keep_sources: bool = False
    """Keep each event's input text (to write refused ones aside)."""


@dataclass(slots=True)
class RawItem:
    """One item of an input, decoded or not."""

    line: int
    """The line it starts on, from 1."""
    raw: bytes | str
    """Its text, as in the input (bytes until someone needs it as text)."""
    value: Any = None
    """The decoded JSON value, when it decoded."""
    error: str | None = None
    """Why it could not be decoded."""
    index: int | None = None
    """Its place in the input's JSON array, from 0 (None for JSON Lines)."""
    fatal: bool = False
    """Whether reading stopped here: what follows in the input cannot be read."""

    @property
    def text(self) -> str:
        """Its text, as in the input."""
        raw = self.raw
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


_BOM = b"\xef\xbb\xbf"
"""UTF-8's byte-order mark, which some tools write at the start of a text file."""


def read_items(
    stream: IO[bytes], max_event_bytes: int, progress: Callable[[int], None] | None = None
) -> Iterator[RawItem]:
    """Items of a JSON Lines input, or of one JSON array, with the lines they start on."""
    head = stream.read(1)
    if head == _BOM[:1]:
        head += stream.read(len(_BOM) - 1)
        if head == _BOM:
            # Windows tools begin UTF-8 text with a byte-order mark: not part of the first event.
            head = stream.read(1)
    if not head:
        return  # an empty input: on a terminal, reading on would wait for a second Ctrl-D
    # The blank lines before the first item are counted, not kept (kept, they were copied
    # again for each byte: a megabyte of them took minutes); its own line's white space is.
    blank = 0
    lead = bytearray()
    while head.isspace():
        if head == b"\n":
            blank += 1
            lead.clear()
        else:
            lead += head
        head = stream.read(1)
        if not head:
            return  # nothing but white space
    if head == b"[":
        rest = stream.read()
        if progress:
            progress(blank + len(lead) + len(head) + len(rest))
        yield from _array_items(b"\n" * blank + bytes(lead) + head + rest, max_event_bytes)
        return
    if progress and blank:
        progress(blank)
    # The first line read below starts with the head.
    prefix = bytes(lead) + head
    line_no = blank
    # No line is read whole past the largest event (and some white space around it): a
    # line of any length, even an endless one, is measured in parts, not held in memory.
    cap = max_event_bytes + _SLACK
    for raw in iter(functools.partial(stream.readline, cap), b""):
        cut = len(raw) == cap and raw[-1:] != b"\n"
        if prefix:
            raw = prefix + raw
            prefix = b""
        line_no += 1
        if progress:
            progress(len(raw))
        if cut:
            kept, size = _long_line(raw, stream, max_event_bytes, progress)
            if size > max_event_bytes:
                yield RawItem(line_no, _preview(kept), error=_too_large(size, max_event_bytes))
                continue
            raw = kept[:size]
        # The common line inline (a generator per line costs as much as decoding it).
        stripped = raw.strip()
        if stripped and len(stripped) <= max_event_bytes:
            try:
                yield RawItem(line_no, stripped, orjson.loads(stripped))
                continue
            except orjson.JSONDecodeError:
                pass
        yield from _line_item(raw, line_no, max_event_bytes)
    if prefix:
        yield from _line_item(prefix, line_no + 1, max_event_bytes)


_SLACK = 1 << 16
"""The white space a line may have around its event and still be read in one piece."""
_PART = 1 << 20
"""How much of a longer line is read at a time."""


def _long_line(
    part: bytes, stream: IO[bytes], limit: int, progress: Callable[[int], None] | None
) -> tuple[bytes, int]:
    """Read the rest of a line that ``part`` (its first part, with no line end) began:
    its text's first ``limit + 1`` bytes, and its text's size, the white space around it
    left out. Nothing more of it is kept."""
    kept = bytearray()
    start = -1  # where the text begins in the line (-1: only white space so far)
    end = 0  # where it ends
    at = 0  # where ``part`` begins
    while True:
        if start < 0:
            text = part.lstrip()
            if text:
                start = at + len(part) - len(text)
        if start >= 0:
            if len(kept) <= limit:
                kept += part[max(start - at, 0) :][: limit + 1 - len(kept)]
            last = len(part.rstrip())
            if last:
                end = at + last
        at += len(part)
        if part.endswith(b"\n"):
            break
        part = stream.readline(_PART)
        if not part:
            break
        if progress:
            progress(len(part))
    return bytes(kept), (end - start if start >= 0 else 0)


def _line_item(raw: bytes, line_no: int, limit: int) -> Iterator[RawItem]:
    stripped = raw.strip()
    if not stripped:
        return
    if len(stripped) > limit:
        yield RawItem(line_no, _preview(stripped), error=_too_large(len(stripped), limit))
        return
    try:
        # orjson checks the UTF-8 itself: the text is decoded only if someone needs it.
        yield RawItem(line_no, stripped, orjson.loads(stripped))
    except orjson.JSONDecodeError as e:
        try:
            stripped.decode("utf-8")
        except UnicodeDecodeError as u:
            yield RawItem(line_no, stripped, error=f"not UTF-8 text: {u.reason} at byte {u.start}")
        else:
            yield RawItem(line_no, stripped, error=_not_json(e, raw))


def _not_json(error: orjson.JSONDecodeError, raw: bytes) -> str:
    """Why a line is not JSON, where in the line, and what a line must be (orjson's own
    wording names JSON's grammar: "invalid literal, expected 'null'" for a bare word)."""
    column = error.colno + len(raw) - len(raw.lstrip())  # counted in the line as given
    return f"not valid JSON: each line must be one event, a JSON object ({error.msg}, at column {column})"


def _array_items(data: bytes, limit: int) -> Iterator[RawItem]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = 1 + data.count(b"\n", 0, e.start)
        yield _stopped(line, None, "", f"not UTF-8 text: {e.reason} at byte {e.start}")
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = 1 + text.count("\n", 0, pos)
    index = 0
    expect_item = True
    while True:
        start = _skip_space(text, pos)
        line += text.count("\n", pos, start)
        pos = start
        if pos >= len(text):
            yield _stopped(line, index, "", "not valid JSON: the array is not closed with ]")
            return
        if text[pos] == "]":
            after = _skip_space(text, pos + 1)
            if after < len(text):
                yield _stopped(
                    line + text.count("\n", pos, after), None, text[after : after + 40],
                    "not valid JSON: text after the array's ]",
                )
            return
        if not expect_item:
            if text[pos] != ",":
                yield _stopped(line, index, text[pos : pos + 40], "not valid JSON: expected , or ] between items")
                return
            pos += 1
            expect_item = True
            continue
        try:
            _, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            yield _stopped(e.lineno, index, text[pos : pos + 40], f"not valid JSON: {e.msg}")
            return
        except RecursionError:
            # The decoder cannot say where such an item ends, so nothing after it can be read.
            yield _stopped(line, index, text[pos : pos + 40], "not valid JSON: nested too deeply")
            return
        item_text = text[pos:end]
        item_bytes = item_text.encode("utf-8")
        if len(item_bytes) > limit:
            yield RawItem(line, _preview(item_bytes), error=_too_large(len(item_bytes), limit), index=index)
        else:
            # Decode again with orjson so arrays and lines read numbers alike (NaN refused).
            try:
                yield RawItem(line, item_text, orjson.loads(item_bytes), index=index)
            except orjson.JSONDecodeError as e:
                yield RawItem(line, item_text, error=f"not valid JSON: {e}", index=index)
        line += text.count("\n", pos, end)
        pos = end
        index += 1
        expect_item = False


def _stopped(line: int, index: int | None, raw: str, error: str) -> RawItem:
    """Where an array could be read no further: its items from there on are unknown."""
    return RawItem(line, raw, error=f"{error}; the input cannot be read past this point", index=index, fatal=True)


def _skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _preview(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace") + "…"


def _too_large(size: int, limit: int) -> str:
    return (
        f"the event is {size:,} bytes; the limit is {limit:,} bytes "
        "(--max-event-bytes or FLOWLEDGER_MAX_EVENT_BYTES)"
    )


def candidates(
    items: Iterable[RawItem], options: IngestOptions, rejected: list[Problem]
) -> Iterator[list[Candidate]]:
    """Validate and redact items into chunks of candidates.

    Invalid items go to ``rejected``: one :class:`Problem` per broken field, each with
    the item's input text as ``source``. Where the input can be read no further (a
    broken JSON array), raises :class:`InvalidInput` with the problems so far.
    """
    chunk: list[Candidate] = []
    redactor = options.redactor
    for item in items:
        if item.error is not None:
            rejected.append(_InputProblem(item.line, item.error, None, item.index, source=item.text))
            if item.fatal:
                # The items after it are unknown: storing the ones before would drop them
                # silently, even where invalid events may be set aside.
                raise InvalidInput(list(rejected))
            continue
        try:
            body = validate_event(item.value)
        except EventInvalid as e:
            event_id = item.value.get("id") if isinstance(item.value, dict) else None
            event_id = event_id if isinstance(event_id, str) else None
            for message in e.messages:
                rejected.append(_InputProblem(item.line, message, event_id, item.index, source=item.text))
            continue
        body = redactor.redact_event(body)
        chunk.append(
            Candidate.make(
                body,
                stream_of(body),
                item.line,
                item.text if options.keep_sources else None,
                item.index,
            )
        )
        if len(chunk) >= options.chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _InputProblem(Problem):
    source: str | None = None
    """The item's input text."""
