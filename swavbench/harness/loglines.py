"""Reading a log's lines in bounded memory, and text kept from them for people (pure; used by logparse).

A line longer than MAX_LINE characters is examined up to there; the rest is counted, never kept. Files are
read line by line in binary (UTF-8, bad bytes replaced), so a 200 MB line costs MAX_LINE of memory.
"""

from __future__ import annotations

from collections import deque
from typing import BinaryIO, Iterator

from swavbench.inputs import MAX_SHOWN, cut

MAX_LINE = 1 << 16  # characters of one physical line examined (a PASSL train line is ~250)
MAX_KEPT = 50  # fatal lines / problems kept (the first and the last); the count beyond is reported


def text_lines(text: str) -> Iterator[tuple[str, int, bool]]:
    """(line cut to MAX_LINE, bytes beyond the cut, ends with a newline) for each line of `text`."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        terminated = end != -1
        end = end if terminated else size
        more = 0
        if end - start > MAX_LINE:
            rest = text[start + MAX_LINE : end]
            more = len(rest) if rest.isascii() else len(rest.encode("utf-8", "replace"))
        yield text[start : min(end, start + MAX_LINE)], more, terminated
        start = end + 1


def file_lines(handle: BinaryIO) -> Iterator[tuple[str, int, bool]]:
    """As `text_lines`, reading a binary file line by line (UTF-8, bad bytes replaced); bounded memory."""
    while True:
        chunk = handle.readline(MAX_LINE)
        if not chunk:
            return
        if chunk.endswith(b"\n"):
            yield chunk[:-1].decode("utf-8", "replace"), 0, True
            continue
        more, terminated = 0, False
        while len(chunk) == MAX_LINE and not terminated:  # a longer line: count the rest, keep nothing
            piece = handle.readline(1 << 20)
            if not piece:
                break
            terminated = piece.endswith(b"\n")
            more += len(piece) - terminated
        yield chunk.decode("utf-8", "replace"), more, terminated


def shown_line(seg: str, more: int) -> str:
    """A line for messages: at most MAX_SHOWN characters, then "(N more bytes)" (N counts the uncut rest)."""
    if more:
        return f"{seg[:MAX_SHOWN]} ... ({len(seg[MAX_SHOWN:].encode('utf-8', 'replace')) + more} more bytes)"
    return cut(seg)


class Kept:
    """The first and the last MAX_KEPT // 2 items of a stream, and how many fell between."""

    def __init__(self) -> None:
        self.head: list[str] = []
        self.last: deque = deque(maxlen=MAX_KEPT // 2)
        self.dropped = 0

    def add(self, item: str) -> None:
        if len(self.head) < MAX_KEPT // 2:
            self.head.append(item)
            return
        if len(self.last) == self.last.maxlen:
            self.dropped += 1
        self.last.append(item)

    def items(self, what: str) -> list[str]:
        gap = [f"... {self.dropped} more {what} ..."] if self.dropped else []
        return self.head + gap + list(self.last)
