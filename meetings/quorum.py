"""Quorum arithmetic (rule 31 of the model rules of procedure), exact and free of I/O."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction


def required(parties_in_force: int, fraction: Fraction) -> int:
    """Parties needed: the fraction of those in force, rounded up, computed exactly."""
    if parties_in_force < 0:
        raise ValueError("parties_in_force cannot be negative")
    return math.ceil(parties_in_force * Fraction(fraction))


def in_force_on(parties: Iterable[tuple[str, dt.date | None]], day: dt.date) -> set[str]:
    """Codes of the Parties for which the convention is in force on day."""
    return {code for code, entry_into_force in parties if entry_into_force is not None and entry_into_force <= day}


@dataclass(frozen=True, slots=True)
class Quorum:
    """The quorum of a session at one moment."""

    in_force: int
    present: int
    needed_to_open: int
    needed_to_decide: int
    present_codes: tuple[str, ...]

    @property
    def can_open(self) -> bool:
        # With no Party in force there is nothing to count: no quorum.
        return self.in_force > 0 and self.present >= self.needed_to_open

    @property
    def can_decide(self) -> bool:
        return self.in_force > 0 and self.present >= self.needed_to_decide


def quorum(in_force: set[str], present: set[str], to_open: Fraction, to_decide: Fraction) -> Quorum:
    """The quorum, counting as present only the Parties for which the convention is in force."""
    counted = tuple(sorted(present & in_force))
    n = len(in_force)
    return Quorum(
        in_force=n,
        present=len(counted),
        needed_to_open=required(n, to_open),
        needed_to_decide=required(n, to_decide),
        present_codes=counted,
    )
