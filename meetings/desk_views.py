"""The secretariat's registration desk: searchable list, filters, bulk decisions, registration statistics."""

from __future__ import annotations

from meetings.views import bp  # noqa: F401  (routes are added to the meetings blueprint)
