"""Quorum arithmetic: one third to open, two thirds to decide, exactly."""

import datetime as dt
from fractions import Fraction

import pytest

from meetings.quorum import in_force_on, quorum, required

THIRD, TWO_THIRDS = Fraction(1, 3), Fraction(2, 3)


@pytest.mark.parametrize(
    ("n", "to_open", "to_decide"),
    [(132, 44, 88), (137, 46, 92), (0, 0, 0), (1, 1, 1), (2, 1, 2), (3, 1, 2), (4, 2, 3), (100, 34, 67), (110, 37, 74)],
)
def test_thresholds_round_up_exactly(n, to_open, to_decide):
    assert required(n, THIRD) == to_open
    assert required(n, TWO_THIRDS) == to_decide


def test_fractions_are_exact_where_floats_would_round_wrong():
    # 3 * (2/3) as a float is 2.0000000000000004 in some orders of operation; exact arithmetic gives 2.
    assert required(3, Fraction("2/3")) == 2
    assert required(300, Fraction(2, 3)) == 200
    assert required(10, Fraction(1, 2)) == 5


def test_negative_count_is_refused():
    with pytest.raises(ValueError):
        required(-1, THIRD)


def test_party_counts_only_from_its_entry_into_force():
    day = dt.date(2021, 11, 1)
    parties = [
        ("CHE", dt.date(2017, 8, 16)),
        ("SAME", day),
        ("LATE", day + dt.timedelta(days=1)),
        ("NONE", None),
    ]
    assert in_force_on(parties, day) == {"CHE", "SAME"}


def test_present_parties_not_in_force_do_not_count():
    q = quorum({"A", "B", "C"}, {"A", "X"}, THIRD, TWO_THIRDS)
    assert (q.in_force, q.present, q.present_codes) == (3, 1, ("A",))
    assert q.can_open and not q.can_decide


def test_thresholds_reached_at_exactly_the_number_needed():
    in_force = {f"P{i}" for i in range(132)}
    present = {f"P{i}" for i in range(88)}
    assert quorum(in_force, present, THIRD, TWO_THIRDS).can_decide
    present.discard("P0")
    q = quorum(in_force, present, THIRD, TWO_THIRDS)
    assert q.can_open and not q.can_decide


def test_no_party_in_force_means_no_quorum():
    q = quorum(set(), set(), THIRD, TWO_THIRDS)
    assert (q.needed_to_open, q.needed_to_decide) == (0, 0)
    assert not q.can_open and not q.can_decide
