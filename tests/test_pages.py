"""Pages as a browser gets them: security headers, clear errors, and a database that is down."""

import pytest

from app import create_app


def test_pages_carry_security_headers(client, cop4):
    response = client.get("/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Register" in response.get_data(as_text=True)


def test_unknown_pages_and_meetings_say_so(client, cop4):
    for path in ("/nowhere", "/meetings/COP-99/register", "/sessions/424242"):
        response = client.get(path)
        assert response.status_code in (302, 404)
    response = client.get("/meetings/COP-99/register")
    assert response.status_code == 404 and "There is no such page" in response.get_data(as_text=True)


def test_oversized_posts_are_refused(client, cop4):
    response = client.post("/auth/login", data={"email": "x" * (7 * 1024 * 1024)})
    assert response.status_code == 413
    assert "larger than the server accepts" in response.get_data(as_text=True)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_database_that_is_down_gets_a_clear_answer(tmp_path):
    app = create_app("testing", {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    response = app.test_client().get("/")
    assert response.status_code == 503
    assert "The database is busy or unreachable. Nothing was saved" in response.get_data(as_text=True)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_logged_in_user_gets_the_same_clear_answer_when_the_database_goes_down(app, make_user, clock):
    import sqlalchemy as sa
    from conftest import login

    from auth.models import Role

    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    client = app.test_client()
    login(client, "s@example.org", "secretariat pass", secret, clock)
    working = app.extensions["db_sessionmaker"].kw["bind"]
    app.extensions["db_sessionmaker"].configure(bind=sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    try:
        response = client.get("/")
    finally:
        app.extensions["db_sessionmaker"].configure(bind=working)
    assert response.status_code == 503
    assert "Nothing was saved" in response.get_data(as_text=True)


def test_request_logs_do_not_keep_the_tokens_of_emailed_links():
    import logging

    from app import RedactLinkTokens

    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '%s - - "%s" %s',
        ("127.0.0.1", "GET /manage-registration/eyJ.abc-1/letter HTTP/1.1", "200"),
        None,
    )
    RedactLinkTokens().filter(record)
    assert record.getMessage() == '127.0.0.1 - - "GET /manage-registration/[token]/letter HTTP/1.1" 200'
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "GET /auth/set-password/abc.def?x=1", (), None)
    RedactLinkTokens().filter(record)
    assert record.getMessage() == "GET /auth/set-password/[token]?x=1"
