"""Per-address limits on the forms anyone can send (login, codes, emailed links), with Flask-Limiter.

These count every POST from one client address, whatever email it names; the throttle in
auth/throttle.py counts failures per email address, whatever address they come from. The app
factory calls `limiter.init_app(app)`. Settings: RATELIMIT_ENABLED, and RATELIMIT_STORAGE_URI
(memory:// for one process; redis://... when several processes serve the app, so that they share
the counts).
"""

from __future__ import annotations

import datetime as dt
import time

from flask import make_response, render_template, request
from flask.wrappers import Response
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address

# Endpoint: limits per client address on its POSTs ("N/period", several separated by ";"). A
# conference venue puts hundreds of delegates behind one address, so the limits stop scripted
# guessing without stopping a room of people logging in at 9:00.
LIMITS = {
    "auth.login": "120/minute;2000/hour",
    "auth.code": "120/minute;2000/hour",
    "auth.recovery_login": "10/minute;60/hour",
    "auth.enrol": "120/minute;2000/hour",
    "auth.regenerate_recovery_codes": "10/minute;60/hour",
    "auth.set_password": "10/minute;60/hour",
    # These two send email: fewer, so that the app cannot be used to flood an inbox.
    "auth.resend_confirmation": "5/minute;30/hour",
    "meetings.request_manage_link": "5/minute;30/hour",
}


def limit_of_request() -> str:
    """The limits for the current request: those of its endpoint for a POST, none otherwise ("")."""
    if request.method != "POST":
        return ""
    return LIMITS.get(request.endpoint or "", "")


def in_words(seconds: float) -> str:
    """A wait as people say it: "45 seconds", "1 minute", "12 minutes"."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minutes"


def too_many_requests(limit: RequestLimit) -> Response:
    """The 429 page: what happened and when to try again; it names no email, so it reveals no account."""
    wait = max(1, limit.reset_at - int(time.time()))
    until = dt.datetime.fromtimestamp(limit.reset_at, dt.UTC)
    page = render_template("auth/rate_limited.html", wait=in_words(wait), until=until)
    response = make_response(page, 429)
    response.headers["Retry-After"] = str(wait)
    response.headers["Cache-Control"] = "no-store"
    return response


# One limiter for the process; every app the factory builds initialises it (tests build many).
# The limits are one table above rather than decorators, so that each endpoint's limit is read in one
# place, including the manage-link request of the meetings blueprint.
limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[limit_of_request],
    strategy="moving-window",
    on_breach=too_many_requests,
)
