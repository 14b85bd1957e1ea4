"""Login, code, recovery-code and enrolment forms, and the password rules as a form validator: the services decide."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length, Regexp, ValidationError

from auth.passwords import MAX_LENGTH, password_problem


def _value(form, name: str) -> str:
    return (form[name].data or "") if name in form else ""


def password_rules(form, field) -> None:
    """The rules of auth.passwords, against the email and names on the form, or of form.account when it has none."""
    account = getattr(form, "account", None)
    email = _value(form, "email") or (account.email if account is not None else "")
    names = [_value(form, "given_name"), _value(form, "family_name")]
    if not any(names) and account is not None:
        names = [account.given_name, account.family_name]
    problem = password_problem(field.data or "", email=email, names=names)
    if problem:
        raise ValidationError(problem)


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[DataRequired(), Length(max=254), Email(check_deliverability=False)],
    )
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_LENGTH)])


class CodeForm(FlaskForm):
    code = StringField(
        "6-digit code",
        validators=[
            DataRequired(message="Enter the 6-digit code from your authenticator app."),
            Regexp(
                r"^\s*[0-9]{3}\s?[0-9]{3}\s*$",
                message="The code is 6 digits, for example 123456.",
            ),
        ],
        render_kw={
            "inputmode": "numeric",
            "autocomplete": "one-time-code",
            "maxlength": 7,
            "autofocus": True,
        },
    )


class RecoveryCodeForm(FlaskForm):
    code = StringField(
        "Recovery code",
        description="One of the ten codes you saved when you set up your authenticator, e.g. 7KQ2M-XH4PD.",
        validators=[
            DataRequired(message="Enter one of your recovery codes."),
            Regexp(
                r"^\s*[A-Za-z0-9]{5}[\s-]?[A-Za-z0-9]{5}\s*$",
                message="A recovery code is 10 letters and digits, written like 7KQ2M-XH4PD.",
            ),
        ],
        render_kw={
            "autocomplete": "off",
            "autocapitalize": "characters",
            "spellcheck": "false",
            "maxlength": 13,
            "autofocus": True,
        },
    )


class ConfirmForm(FlaskForm):
    """A button that changes something: only the CSRF token travels with it."""


class ResendForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254), Email(check_deliverability=False)])
