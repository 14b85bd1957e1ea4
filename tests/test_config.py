"""Configuration: environment overrides, and a production setup that refuses unsafe settings."""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from app import create_app


def test_every_setting_can_come_from_the_environment():
    settings = config.load(
        "development",
        {
            "DATABASE_URL": "postgresql+psycopg://db/cop",
            "SECRET_KEY": "s3cret",
            "SOCKETIO_MESSAGE_QUEUE": "redis://127.0.0.1:6379/0",
            "TOTP_VALID_WINDOW": "0",
            "SESSION_COOKIE_SECURE": "true",
        },
    )
    assert settings["DATABASE_URL"] == "postgresql+psycopg://db/cop"
    assert settings["SOCKETIO_MESSAGE_QUEUE"] == "redis://127.0.0.1:6379/0"
    assert settings["TOTP_VALID_WINDOW"] == 0
    assert settings["SESSION_COOKIE_SECURE"] is True


def test_a_malformed_value_is_named():
    with pytest.raises(RuntimeError, match="TOTP_VALID_WINDOW"):
        config.load("development", {"TOTP_VALID_WINDOW": "one"})


def test_the_configuration_is_chosen_by_app_config():
    assert config.load(environ={"APP_CONFIG": "testing"})["TESTING"] is True
    with pytest.raises(RuntimeError, match="Unknown APP_CONFIG"):
        config.load(environ={"APP_CONFIG": "staging"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DATABASE_URL": "postgresql+psycopg://db/cop"}, "SECRET_KEY"),
        ({"DATABASE_URL": "postgresql+psycopg://db/cop", "SECRET_KEY": config.DEFAULT_SECRET_KEY}, "SECRET_KEY"),
        ({"DATABASE_URL": "postgresql+psycopg://db/cop", "SECRET_KEY": "k" * 40, "DEBUG": "1"}, "DEBUG"),
        ({"SECRET_KEY": "k" * 40}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql+psycopg://db/cop", "SECRET_KEY": "k" * 40}, "TOTP_ENCRYPTION_KEY"),
    ],
)
def test_production_refuses_unsafe_settings(environ, message):
    with pytest.raises(RuntimeError, match=message):
        config.load("production", environ)


def test_production_starts_with_safe_settings():
    key = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
    settings = config.load(
        "production",
        {"DATABASE_URL": "postgresql+psycopg://db/cop", "SECRET_KEY": "k" * 40, "TOTP_ENCRYPTION_KEY": key},
    )
    assert settings["SESSION_COOKIE_SECURE"] is True and settings["DEBUG"] is False


GC_PROBE = """
import gc, json
default = gc.get_threshold()[0]
from app import create_app
create_app("production")
print(json.dumps([default, gc.get_threshold()[0], gc.get_freeze_count()]))
"""


@pytest.mark.parametrize(("setting", "young", "frozen"), [(None, 50_000, True), ("0", "Python's", False)])
def test_a_server_process_collects_garbage_seldom_and_never_walks_the_apps_own_objects(setting, young, frozen):
    # At thousands of socket events a second, Python's default (a young collection every 700 new
    # objects) sent every object held across a round trip to the oldest generation, whose passes over
    # the whole heap took over 100 ms, several times a minute: the check-ins' slowest acknowledgements.
    environ = {key: value for key, value in os.environ.items() if key != "GC_YOUNG_THRESHOLD"}
    if setting is not None:
        environ["GC_YOUNG_THRESHOLD"] = setting
    environ.update(
        DATABASE_URL="sqlite://",
        SECRET_KEY="k" * 40,
        TOTP_ENCRYPTION_KEY="ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    )
    probe = subprocess.run(
        [sys.executable, "-c", GC_PROBE],
        cwd=Path(__file__).resolve().parent.parent,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    default, threshold, freeze_count = json.loads(probe.stdout.strip().splitlines()[-1])
    assert threshold == (default if young == "Python's" else young)
    assert (freeze_count > 10_000) is frozen  # the app, its modules and mappers: out of every pass


def test_an_app_under_test_leaves_garbage_collection_as_python_has_it(database_url):
    before = (gc.get_threshold(), gc.get_freeze_count())
    create_app("testing", {"DATABASE_URL": database_url}).extensions["db_engine"].dispose()
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
