"""Exports as generators over plain rows, shared by views and the command line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """A cell that spreadsheets will not run as a formula (CSV injection); numbers stay numbers (-5, not '-5)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_lines(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """CSV text, one line at a time: the header, then each row's cells neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: list[str]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(columns)
    for row in rows:
        yield line([neutralise(row.get(column)) for column in columns])


ATTENDANCE_COLUMNS = [
    "participant",
    "email",
    "category",
    "party",
    "represents",
    "regional_group",
    "channel",
    "in_utc",
    "out_utc",
    "in_local",
    "out_local",
]
