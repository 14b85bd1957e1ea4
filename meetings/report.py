"""A statistics report as plain tables and charts: what the statistics page shows and every export writes.

The figures are computed elsewhere (meetings/statistics.py); this module only says their shape,
so that the page, the CSV, XLSX, PDF and JSON exports and the command line share one model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["text", "int", "float", "percent", "duration", "datetime"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its key (stable, used in CSV headers and JSON), its label for people, and its kind.

    Kinds: text; int; float; percent (a float from 0 to 1); duration (seconds, an int);
    datetime (an aware datetime, shown in the report's time zone).
    """

    key: str
    label: str
    kind: Kind = "text"


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table. rows may be a one-pass iterable (a generator) for long tables: exports stream it."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: Iterable[tuple]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[float | int | None, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart over labels: bar (categories) or step (a count over time, labels are ISO times)."""

    key: str
    title: str
    kind: Literal["bar", "step"]
    labels: tuple[str, ...]
    series: tuple[Series, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """Statistics of one scope (the whole meeting, a segment or a session), as produced at one moment."""

    meeting_code: str
    meeting_title: str
    scope: str  # "Whole meeting", a segment's name, or a session's title
    filters: dict[str, str]  # e.g. {"category": "party"}; empty when unfiltered
    timezone: str  # the zone times are shown in (the scope's segment, or the meeting's first)
    produced_at: dt.datetime
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
