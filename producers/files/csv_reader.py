"""Streaming CSV over bytes: content hash, encoding decided or refused, rows with their raw text.

Pure over byte streams (no paths): ``scan`` reads the bytes once (sha256 and which encodings
they can be), ``decide_encoding`` applies the mapping's rule, ``read_rows`` yields each record
with the physical line it starts on and its original text, in constant memory. CRLF, quoted
newlines and a trailing separator on every line are handled; nothing is ever guessed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from supplybus.errors import ConfigError

CHUNK = 1 << 20
FIELD_LIMIT = 1 << 20  # a longer field is a reject (an unclosed quote swallowing the file)
_BOM = codecs.BOM_UTF8
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_CONTROL = frozenset(bytes(range(0x20)) + b"\x7f") - frozenset(b"\t\r\n")


@dataclass(frozen=True)
class Scan:
    """What one pass over the bytes found."""

    sha256: str
    size: int
    bom: bool
    utf8_error: str | None  # where the bytes stop being UTF-8 ("line 3, byte 0xe9")
    cp1252_undefined: bool  # a byte Windows-1252 does not define (0x81, 0x8d, 0x8f, 0x90, 0x9d)
    controls: bool  # a control character other than tab, CR, LF (binary, or UTF-16)


def scan(stream: IO[bytes]) -> Scan:
    """sha256 and the encoding evidence of the whole stream (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    size = 0
    line = 1
    first = b""
    utf8_error: str | None = None
    undefined = controls = False
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        if size < 3:
            first = (first + chunk)[:3]
        if utf8_error is None:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start] if exc.start < len(chunk) else 0
                where = line + chunk.count(b"\n", 0, max(exc.start, 0))
                utf8_error = f"line {where}, byte 0x{bad:02x}"
        undefined = undefined or not _CP1252_UNDEFINED.isdisjoint(chunk)
        controls = controls or not _CONTROL.isdisjoint(chunk)
        line += chunk.count(b"\n")
        size += len(chunk)
    if utf8_error is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_error = f"line {line}, a truncated character at the end"
    return Scan(digest.hexdigest(), size, first == _BOM, utf8_error, undefined, controls)


def decide_encoding(found: Scan, declared: str, label: str) -> str:
    """The Python codec to read with, or ConfigError naming why the file is refused.

    utf-8: a BOM is dropped; any byte that is not UTF-8 refuses the file. windows-1252: a UTF-8
    BOM or an undefined byte refuses it. auto: UTF-8 when every byte is UTF-8; otherwise
    Windows-1252 only when there is no BOM, every byte is defined there and no control
    character appears; otherwise refused (declare the encoding).
    """
    if found.controls:
        raise ConfigError(
            f"{label}: control characters in the file (binary, or UTF-16?): export it as UTF-8 "
            "or Windows-1252 text"
        )
    if declared == "utf-8" or (declared == "auto" and found.utf8_error is None):
        if found.utf8_error is not None:
            raise ConfigError(f"{label}: not UTF-8 ({found.utf8_error}); the mapping says "
                              "encoding: utf-8 (windows-1252 if that is what it is)")  # fmt: skip
        return "utf-8-sig"
    if declared == "windows-1252":
        if found.bom:
            raise ConfigError(f"{label}: starts with a UTF-8 byte order mark, but the mapping "
                              "declares encoding: windows-1252")  # fmt: skip
        if found.cp1252_undefined:
            raise ConfigError(f"{label}: has bytes Windows-1252 does not define; not Windows-1252")
        return "cp1252"
    if found.bom or found.cp1252_undefined:
        raise ConfigError(f"{label}: cannot tell the encoding: not UTF-8 ({found.utf8_error}) "
                          "and not Windows-1252; declare encoding: in the mapping")  # fmt: skip
    return "cp1252"


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV record: the physical line it starts on, its cells, its original text."""

    line: int
    cells: list[str]
    raw: str


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str
    message: str
    raw: str


class _Lines:
    """The text's physical lines (endings kept) that also remembers those read since ``take``."""

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = text
        self.read = 0
        self._pending: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            raise StopIteration
        self.read += 1
        self._pending.append(line)
        return line

    def take(self) -> tuple[int, str]:
        """(first line number, original text) of what was read since the last take."""
        pending, self._pending = self._pending, []
        return self.read - len(pending) + 1, "".join(pending)


def read_rows(stream: IO[bytes], encoding: str, delimiter: str) -> Iterator[Row | BadRow]:
    """Rows of the stream (the header row included, first), blank lines skipped.

    A record csv cannot parse (a field over 1 MiB: an unclosed quote) is a BadRow. The raw text
    keeps its line ends: CRLF stays CRLF, a quoted newline stays inside its record.
    """
    csv.field_size_limit(FIELD_LIMIT)
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    try:
        lines = _Lines(text)
        reader = csv.reader(lines, delimiter=delimiter, quotechar='"', strict=False)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line, raw = lines.take()
                yield BadRow(line, "unparsable", f"not CSV: {exc}", raw)
                continue
            line, raw = lines.take()
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            yield Row(line, cells, raw)
    finally:
        if not stream.closed:
            text.detach()  # the caller owns (and closes) the stream


def header_of(row: Row, label: str) -> tuple[list[str], bool]:
    """The header names (stripped) and whether it ends in a trailing separator."""
    names = [c.strip() for c in row.cells]
    trailing = len(names) > 1 and names[-1] == ""
    if trailing:
        names = names[:-1]
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise ConfigError(f"{label}: header column {blank[0]} has no name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{label}: header names {dup[0]!r} twice")
    return names, trailing


def cells_by_header(names: list[str], trailing: bool, row: Row) -> dict[str, str] | BadRow:
    """The row as header -> cell, or a BadRow when the count of fields differs."""
    cells = row.cells
    if len(cells) == len(names) + 1 and cells[-1] == "" and (trailing or len(names) > 0):
        cells = cells[:-1]  # a trailing separator (on this line, or on every line)
    if len(cells) != len(names):
        return BadRow(row.line, "field_count",
                      f"expected {len(names)} fields, got {len(cells)}", row.raw)  # fmt: skip
    return dict(zip(names, cells, strict=True))
