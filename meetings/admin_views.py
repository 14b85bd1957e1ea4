"""The secretariat's administration: the Parties and their import, accounts and roles, the audit log."""

from __future__ import annotations

from meetings.views import bp  # noqa: F401  (routes are added to the meetings blueprint)
