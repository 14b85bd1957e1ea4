"""Delegations: a focal point registers its delegation; the secretariat sees each delegation and its credentials."""

from __future__ import annotations

from meetings.views import bp  # noqa: F401  (routes are added to the meetings blueprint)
