"""Configuration: environment overrides, and a production setup that refuses unsafe settings."""

import pytest

import config


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
