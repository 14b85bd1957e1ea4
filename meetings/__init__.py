"""Meetings, segments, sessions, Parties, registrations, attendance, quorum and exports."""
