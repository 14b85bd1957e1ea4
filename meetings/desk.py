"""The registration desk: the secretariat's searchable list, bulk decisions and registration statistics.

Filtering, sorting, counting and paging happen in SQL, so a page takes the same few statements with
50 registrations or 5,000. Decisions go through services.approve and services.reject, one registration at a time.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, selectinload

from auth.models import GENDER_LABELS, Gender, User
from meetings import services
from meetings.models import (
    CATEGORY_LABELS,
    Category,
    Meeting,
    Party,
    RegionalGroup,
    Registration,
    RegistrationStatus,
    Segment,
    registration_segments,
)
from meetings.services import MeetingError

# The list's status filter. "pending" means ready for review: an unconfirmed address is not.
STATUS_FILTERS = {
    "pending": "Pending review",
    "unconfirmed": "Awaiting email confirmation",
    "approved": "Approved",
    "rejected": "Rejected",
    "withdrawn": "Withdrawn",
    "all": "All",
}
SORTS = {
    "name": "Name",
    "submitted": "Submitted",
    "represents": "Party or organization",
    "status": "Status",
}
PER_PAGE_CHOICES = (25, 50, 100, 200)
NO_GROUP = "none"
NO_GROUP_LABEL = "No regional group"
MAX_SEARCH_TERMS = 6
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What the secretariat asked the list for: search, filters, sort and page, all from the query string."""

    q: str = ""
    status: str = "pending"
    category: str = ""
    party: str = ""
    group: str = ""
    segment: int | None = None
    duplicates: bool = False
    sort: str = "submitted"
    order: str = "asc"
    page: int = 1
    per_page: int = 50

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ListQuery:
        """Read the query string leniently: a value that makes no sense is ignored, never an error."""
        default = cls()
        status = args.get("status", default.status)
        category = args.get("category", "")
        party = args.get("party", "").strip().upper()
        group = args.get("group", "")
        sort = args.get("sort", default.sort)
        per_page = _int(args.get("per_page"), default.per_page)
        return cls(
            q=" ".join(args.get("q", "").split())[:100],
            status=status if status in STATUS_FILTERS else default.status,
            category=category if category in {c.value for c in Category} else "",
            party=party if len(party) == 3 and party.isalpha() else "",
            group=group if group in {g.value for g in RegionalGroup} | {NO_GROUP} else "",
            segment=_int(args.get("segment"), None),
            duplicates=args.get("duplicates") in {"1", "on", "true", "yes"},
            sort=sort if sort in SORTS else default.sort,
            order="desc" if args.get("order") == "desc" else "asc",
            page=max(1, _int(args.get("page"), 1) or 1),
            per_page=per_page if per_page in PER_PAGE_CHOICES else default.per_page,
        )

    def args(self, **changes) -> dict[str, str]:
        """The query string for this state (with changes), leaving defaults out so links stay short."""
        state = replace(self, **changes)
        values = {
            "q": state.q,
            "status": state.status,
            "category": state.category,
            "party": state.party,
            "group": state.group,
            "segment": state.segment,
            "duplicates": "1" if state.duplicates else "",
            "sort": state.sort,
            "order": state.order,
            "page": state.page,
            "per_page": state.per_page,
        }
        defaults = ListQuery()
        skip = {"q": "", "category": "", "party": "", "group": "", "segment": None, "duplicates": ""}
        skip |= {"sort": defaults.sort, "order": defaults.order, "page": 1, "per_page": defaults.per_page}
        # The status always travels: without it the list falls back to pending review.
        return {key: str(value) for key, value in values.items() if key == "status" or skip.get(key) != value}

    @property
    def filtered(self) -> bool:
        """Whether anything beyond the status narrows the list."""
        return bool(self.q or self.category or self.party or self.group or self.segment or self.duplicates)


def _int(value: str | None, default: int | None) -> int | None:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of the list, the total it was cut from, and the likely duplicates among its rows."""

    rows: list[Registration]
    total: int
    page: int
    per_page: int
    # Registration id -> ids of the other registrations with the same name and Party or organization.
    duplicates: dict[int, list[int]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.page * self.per_page, self.total)

    def window(self, around: int = 2) -> list[int | None]:
        """Page numbers to link: the first, the last and those around the current one; None marks a gap."""
        shown = {1, self.pages, *range(self.page - around, self.page + around + 1)}
        numbers = sorted(n for n in shown if 1 <= n <= self.pages)
        result: list[int | None] = []
        for number in numbers:
            if result and number - (result[-1] or 0) > 1:
                result.append(None)
            result.append(number)
        return result


# Queries ------------------------------------------------------------------------------------


def _duplicate_key() -> sa.ColumnElement[str]:
    """Same given and family name (ignoring case) and same Party, or same organization if no Party."""
    represents = sa.func.coalesce(
        sa.literal("party:") + sa.cast(Registration.party_id, sa.String),
        sa.literal("org:") + sa.func.lower(sa.func.trim(Registration.organization)),
    )
    return (
        sa.func.lower(sa.func.trim(User.given_name))
        + sa.literal("|")
        + sa.func.lower(sa.func.trim(User.family_name))
        + sa.literal("|")
        + represents
    )


def _duplicated_keys(meeting: Meeting) -> sa.Select:
    """The keys that more than one registration of the meeting shares."""
    # Grouped through a subquery: PostgreSQL wants GROUP BY to repeat the selected expression exactly,
    # and the bound literals inside the key would be numbered differently if written twice.
    keyed = (
        sa.select(_duplicate_key().label("key"))
        .select_from(Registration)
        .join(Registration.user)
        .where(Registration.meeting_id == meeting.id)
        .subquery()
    )
    return sa.select(keyed.c.key).group_by(keyed.c.key).having(sa.func.count() > 1)


def _status_condition(status: str) -> sa.ColumnElement[bool] | None:
    unconfirmed = User.email_confirmed_at.is_(None)
    if status == "pending":
        return sa.and_(Registration.status == RegistrationStatus.PENDING, sa.not_(unconfirmed))
    if status == "unconfirmed":
        return sa.and_(Registration.status == RegistrationStatus.PENDING, unconfirmed)
    if status in {s.value for s in RegistrationStatus}:
        return Registration.status == RegistrationStatus(status)
    return None


def _conditions(meeting: Meeting, query: ListQuery, *, status: bool = True) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of the list; the statement must join User and outer-join Party."""
    conditions: list[sa.ColumnElement[bool]] = [Registration.meeting_id == meeting.id]
    if status and (condition := _status_condition(query.status)) is not None:
        conditions.append(condition)
    for term in query.q.split()[:MAX_SEARCH_TERMS]:
        # Every word must match somewhere, so "souza ana" finds Ana Souza.
        conditions.append(
            sa.or_(
                *(
                    column.icontains(term, autoescape=True)
                    for column in (User.given_name, User.family_name, User.email, Registration.organization, Party.name)
                )
            )
        )
    if query.category:
        conditions.append(Registration.category == Category(query.category))
    if query.party:
        conditions.append(Party.code == query.party)
    if query.group == NO_GROUP:
        conditions.append(Party.regional_group.is_(None))
    elif query.group:
        conditions.append(Party.regional_group == RegionalGroup(query.group))
    if query.segment is not None:
        conditions.append(
            Registration.id.in_(
                sa.select(registration_segments.c.registration_id).where(
                    registration_segments.c.segment_id == query.segment
                )
            )
        )
    if query.duplicates:
        conditions.append(_duplicate_key().in_(_duplicated_keys(meeting)))
    return conditions


def _order(query: ListQuery) -> list[sa.ColumnElement]:
    columns = {
        "name": [sa.func.lower(User.family_name), sa.func.lower(User.given_name)],
        "submitted": [Registration.submitted_at],
        "represents": [sa.func.lower(sa.func.coalesce(Party.name, Registration.organization))],
        "status": [Registration.status],
    }[query.sort]
    # The id breaks ties, so that a row never shows on two pages or on none.
    columns = [*columns, Registration.id]
    return [column.desc() if query.order == "desc" else column.asc() for column in columns]


def _from_registrations(statement: sa.Select) -> sa.Select:
    return statement.select_from(Registration).join(Registration.user).outerjoin(Registration.party)


def list_registrations(db: Session, meeting: Meeting, query: ListQuery) -> ListPage:
    """One page of the meeting's registrations, searched, filtered and sorted as asked."""
    conditions = _conditions(meeting, query)
    total = db.scalar(_from_registrations(sa.select(sa.func.count(Registration.id))).where(*conditions)) or 0
    page = min(query.page, max(1, -(-total // query.per_page)))
    rows = list(
        db.scalars(
            _from_registrations(sa.select(Registration))
            .where(*conditions)
            .order_by(*_order(query))
            .limit(query.per_page)
            .offset((page - 1) * query.per_page)
            .options(
                contains_eager(Registration.user),
                contains_eager(Registration.party),
                selectinload(Registration.segments),
                selectinload(Registration.badges),
            )
        )
    )
    return ListPage(rows, total, page, query.per_page, _duplicates_among(db, meeting, [r.id for r in rows]))


def _duplicates_among(db: Session, meeting: Meeting, ids: Sequence[int]) -> dict[int, list[int]]:
    """For the given registrations, the other registrations of the meeting that look like the same person."""
    if not ids:
        return {}
    key = _duplicate_key()
    page_keys = sa.select(key).select_from(Registration).join(Registration.user).where(Registration.id.in_(ids))
    same = db.execute(
        sa.select(Registration.id, key)
        .select_from(Registration)
        .join(Registration.user)
        .where(Registration.meeting_id == meeting.id, key.in_(page_keys))
        .order_by(Registration.id)
    )
    groups: dict[str, list[int]] = defaultdict(list)
    for registration_id, value in same:
        groups[value].append(registration_id)
    return {
        registration_id: [other for other in group if other != registration_id]
        for group in groups.values()
        if len(group) > 1
        for registration_id in group
        if registration_id in set(ids)
    }


def status_counts(db: Session, meeting: Meeting) -> dict[str, int]:
    """How many registrations each status filter shows, plus how many look like duplicates."""
    rows = db.execute(
        sa.select(Registration.status, User.email_confirmed_at.is_(None), sa.func.count(Registration.id))
        .select_from(Registration)
        .join(Registration.user)
        .where(Registration.meeting_id == meeting.id)
        .group_by(Registration.status, User.email_confirmed_at.is_(None))
    )
    counts = dict.fromkeys(STATUS_FILTERS, 0)
    for status, unconfirmed, count in rows:
        if status == RegistrationStatus.PENDING:
            counts["unconfirmed" if unconfirmed else "pending"] += count
        else:
            counts[status.value] += count
        counts["all"] += count
    counts["duplicates"] = (
        db.scalar(
            sa.select(sa.func.count(Registration.id))
            .join(Registration.user)
            .where(Registration.meeting_id == meeting.id, _duplicate_key().in_(_duplicated_keys(meeting)))
        )
        or 0
    )
    return counts


def parties_of(db: Session, meeting: Meeting) -> list[Party]:
    """The Parties of the meeting's convention, by name, for the Party filter."""
    return list(db.scalars(sa.select(Party).where(Party.convention == meeting.convention).order_by(Party.name)))


# Bulk decisions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """One registration of a batch that cannot be decided, and why."""

    registration_id: int
    name: str
    message: str


class BatchRefused(MeetingError):
    """A batch in which at least one registration was refused: none of it may be kept."""

    def __init__(self, refusals: list[Refusal], total: int) -> None:
        super().__init__(
            "batch_refused",
            f"Nothing was changed: {len(refusals)} of the {total} selected registrations cannot be decided.",
        )
        self.refusals = refusals


def decide_many(
    db: Session,
    meeting: Meeting,
    registration_ids: Sequence[int],
    decision: str,
    actor: User,
    now: dt.datetime,
    reason: str = "",
) -> list[Registration]:
    """Approve or reject registrations as one batch; on BatchRefused the caller must roll back."""
    if decision not in ("approve", "reject"):
        raise MeetingError("unknown_action", "Choose whether to approve or reject the selected registrations.")
    ids = sorted(set(registration_ids))
    if not ids:
        raise MeetingError("nothing_selected", "Tick the registrations to decide first.")
    if len(ids) > MAX_BATCH:
        raise MeetingError("batch_too_large", f"Decide at most {MAX_BATCH} registrations at once.")
    if decision == "reject" and not reason.strip():
        raise MeetingError("reason_required", "Give the reason for the rejection; the delegates will read it.")
    found = {
        registration.id: registration
        for registration in db.scalars(
            sa.select(Registration)
            .where(Registration.id.in_(ids), Registration.meeting_id == meeting.id)
            .order_by(Registration.id)
            # On PostgreSQL a colleague deciding the same rows waits, then sees them decided (SQLite ignores it).
            .with_for_update()
            .execution_options(populate_existing=True)
            .options(selectinload(Registration.user), selectinload(Registration.party))
        )
    }
    decided: list[Registration] = []
    refusals: list[Refusal] = []
    for registration_id in ids:
        registration = found.get(registration_id)
        if registration is None:
            refusals.append(
                Refusal(registration_id, f"#{registration_id}", f"There is no such {meeting.code} registration.")
            )
            continue
        try:
            if decision == "approve":
                services.approve(db, registration, actor, now)
            else:
                services.reject(db, registration, actor, reason, now)
        except MeetingError as exc:
            refusals.append(Refusal(registration_id, registration.user.full_name, exc.message))
        else:
            decided.append(registration)
    if refusals:
        raise BatchRefused(refusals, len(ids))
    return decided


# Statistics --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    """One line of a statistics table: what is counted, how many, and their share of the total."""

    key: str
    label: str
    count: int
    percent: float


@dataclass(frozen=True, slots=True)
class Table:
    """A statistics table and the total its percentages are taken of."""

    key: str
    title: str
    total: int
    lines: list[Share]
    note: str = ""


def shares(counted: Sequence[tuple[str, str, int]], total: int) -> list[Share]:
    """Lines with their percentage of total (rounded to one decimal; 0 when there is nothing to count)."""
    return [Share(key, label, count, round(100 * count / total, 1) if total else 0.0) for key, label, count in counted]


def _count_by(db: Session, meeting: Meeting, column: sa.ColumnElement, status: str, *, segments: bool = False) -> dict:
    """Registrations of the meeting in the status, counted by column with GROUP BY."""
    statement = _from_registrations(sa.select(column.label("value")))
    if segments:
        statement = statement.join(registration_segments, registration_segments.c.registration_id == Registration.id)
    conditions = [Registration.meeting_id == meeting.id]
    if (condition := _status_condition(status)) is not None:
        conditions.append(condition)
    inner = statement.where(*conditions).subquery()
    return dict(db.execute(sa.select(inner.c.value, sa.func.count()).group_by(inner.c.value)).all())


def registration_stats(db: Session, meeting: Meeting, status: str = "all") -> list[Table]:
    """Counts of the meeting's registrations by status, and by category, regional group, gender and segment."""
    counts = status_counts(db, meeting)
    by_status = [(key, label, counts[key]) for key, label in STATUS_FILTERS.items() if key != "all"]
    total = counts[status] if status in STATUS_FILTERS else counts["all"]

    categories = _count_by(db, meeting, Registration.category, status)
    groups = _count_by(db, meeting, Party.regional_group, status)
    genders = _count_by(db, meeting, User.gender, status)
    segments = _count_by(db, meeting, registration_segments.c.segment_id, status, segments=True)
    segment_list = list(
        db.scalars(sa.select(Segment).where(Segment.meeting_id == meeting.id).order_by(Segment.starts_on))
    )

    return [
        Table("status", "By status", counts["all"], shares(by_status, counts["all"])),
        Table(
            "category",
            "By category",
            total,
            shares([(c.value, CATEGORY_LABELS[c], categories.get(c, 0)) for c in Category], total),
        ),
        Table(
            "group",
            "By regional group",
            total,
            shares(
                [(g.value, g.value, groups.get(g, 0)) for g in RegionalGroup]
                + [(NO_GROUP, NO_GROUP_LABEL, groups.get(None, 0))],
                total,
            ),
            note="The European Union belongs to no UN regional group; observers represent no Party.",
        ),
        Table(
            "gender",
            "By gender",
            total,
            shares([(g.value, GENDER_LABELS[g], genders.get(g, 0)) for g in Gender], total),
        ),
        Table(
            "segment",
            "By segment",
            total,
            shares([(str(s.id), s.name.capitalize(), segments.get(s.id, 0)) for s in segment_list], total),
            note="A registration may cover several segments, so the shares can add up to more than 100%.",
        ),
    ]
