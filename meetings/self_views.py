"""A participant's own registration: status, corrections, withdrawal, nomination letter; the secretariat's outbox."""

from __future__ import annotations

from meetings.views import bp  # noqa: F401  (routes are added to the meetings blueprint)
