"""Login, code and enrolment forms: shape only; the services decide."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length, Regexp

from auth.passwords import MAX_LENGTH


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


class ResendForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254), Email(check_deliverability=False)])
