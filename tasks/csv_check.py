"""Refuse CSV lines Lepton would misread once the file is cut into chunks.

Chunks are parsed apart from each other by pandas, which silently drops the fields of a
line beyond those the header names (so a stray comma in a text field would shift that
row's values into the wrong columns) and cannot know that a quoted field goes on past
the chunk's last line. The planner therefore checks every line while it scans the file
for line ends: commas are counted with numpy up to the first quote, and from the line
of the first quote on the csv module reads the records with pandas' quoting rules (a
quote opens a field only at its start; a doubled quote stands for one quote).

Plain numpy and the standard library: no Celery, no pandas.
"""

import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tasks.errors import MalformedCsv

NEWLINE, COMMA = ord("\n"), ord(",")


class FieldCounter:
    """Counts the fields of each line of quote-free text fed to it block by block."""

    def __init__(self, path: Path, n_fields: int) -> None:
        self.path = path
        self.n_fields = n_fields
        self.separators_on_open_line = 0

    def feed(self, text: bytes, lines_before: int) -> None:
        """Check the lines ending in ``text``; ``lines_before`` data lines came before it.

        ``text`` continues the line left open by the previous call, if any.
        """
        codes = np.frombuffer(text, dtype=np.uint8)
        line_ends = np.flatnonzero(codes == NEWLINE)
        commas = np.flatnonzero(codes == COMMA)
        commas_before_end = np.searchsorted(commas, line_ends)
        per_line = np.diff(commas_before_end, prepend=0)
        if per_line.size:
            per_line[0] += self.separators_on_open_line
            long_lines = np.flatnonzero(per_line >= self.n_fields)
            if long_lines.size:
                first = int(long_lines[0])
                self._refuse(lines_before + first + 2, int(per_line[first]) + 1)
            self.separators_on_open_line = len(commas) - int(commas_before_end[-1])
        else:
            self.separators_on_open_line += len(commas)

    def finish(self, last_line: int) -> None:
        """Check the file's last line when it has no newline of its own."""
        if self.separators_on_open_line >= self.n_fields:
            self._refuse(last_line, self.separators_on_open_line + 1)

    def _refuse(self, line: int, fields: int) -> None:
        raise MalformedCsv(too_many_fields(self.path, line, fields, self.n_fields))


def check_header(path: Path, header: bytes) -> None:
    """Refuse a header line the planner would misread: CR-only line ends, or a quoted
    name that goes on to the next line (the planner takes the first line as the header).
    """
    # Without any \n, the first "line" is the whole file.
    if b"\n" not in header and header.count(b"\r") > 1:
        raise MalformedCsv(f"{path.name}: lines end in a carriage return alone (an old Mac "
                           "format); convert the line ends to \\n or \\r\\n")
    if b'"' in header:
        text = header.decode("utf-8", errors="replace")
        names = next(csv.reader(io.StringIO(text, newline="")), [])
        if any("\n" in name or "\r" in name for name in names):
            raise MalformedCsv(f"{path.name} line 1: a quoted column name goes on to the next "
                               "line; remove the line break from the header")


def check_quoted_part(path: Path, line_offset: int, line_number: int, n_fields: int) -> None:
    """Check the records from the line at byte ``line_offset`` (line ``line_number``) on.

    Raise :class:`MalformedCsv` for a record with more fields than the header, or one
    whose quoted field spans lines (a chunk boundary would tear it in two).
    """
    with open(path, "rb") as raw, _unlimited_fields():
        raw.seek(line_offset)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text)
        lines_read = 0
        for record in reader:
            line = line_number + lines_read
            if reader.line_num - lines_read > 1 or any("\n" in field or "\r" in field
                                                        for field in record[-1:]):
                raise MalformedCsv(
                    f"{path.name} line {line}: a quoted field goes on to the next line, "
                    "which Lepton cannot split into chunks; remove the line breaks from "
                    "the field or convert the file to Parquet")
            if len(record) > n_fields:
                raise MalformedCsv(too_many_fields(path, line, len(record), n_fields))
            lines_read = reader.line_num


def too_many_fields(path: Path, line: int, fields: int, n_fields: int) -> str:
    """Return the message for a line with more fields than the header names."""
    return (f"{path.name} line {line}: {fields} fields where the header names {n_fields} "
            "(an unquoted comma inside a value?)")


@contextlib.contextmanager
def _unlimited_fields() -> Iterator[None]:
    # The csv module refuses fields over 128 KiB, which pandas reads; the limit is the
    # module's global state, so it is put back afterwards.
    previous = csv.field_size_limit(2 ** 31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)
