"""CSV exports: formula cells neutralised, rows streamed line by line."""

import csv
import io

import pytest

from meetings.exports import csv_lines, neutralise


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("Switzerland", "Switzerland"),
        (None, ""),
        (42, "42"),
        # A number stays a number: a negative one is not text that looks like a formula.
        (-5, "-5"),
        (-0.25, "-0.25"),
        (True, "True"),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def test_csv_lines_round_trip_through_the_csv_module():
    rows = [{"name": 'Dr. "Quoted", Name', "note": "=1+1"}, {"name": "Plain", "note": None}]
    lines = list(csv_lines(["name", "note"], rows))
    assert len(lines) == 3
    parsed = list(csv.DictReader(io.StringIO("".join(lines))))
    assert parsed == [{"name": 'Dr. "Quoted", Name', "note": "'=1+1"}, {"name": "Plain", "note": ""}]
