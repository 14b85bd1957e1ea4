"""Delegation forms: a focal point's member, online role and note verbale; the secretariat's credentials."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import EmailField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional

from auth.models import GENDER_LABELS
from meetings.delegations import CREDENTIALS_LABELS, ONLINE_ROLE_LABELS
from meetings.forms import TITLES, MultiCheckboxField, plain_text
from meetings.models import FUNCTION_LABELS, Function, OnlineRole

ROLE_CHOICES = [
    SelectChoice(OnlineRole.VIEWER.value, ONLINE_ROLE_LABELS[OnlineRole.VIEWER]),
    SelectChoice(OnlineRole.SPEAKER.value, ONLINE_ROLE_LABELS[OnlineRole.SPEAKER]),
]


class MemberForm(FlaskForm):
    """A member of the delegation, pre-registered by the focal point."""

    title = SelectField("Title", choices=[SelectChoice(t, t or "—") for t in TITLES], validators=[Optional()])
    given_name = StringField("Given name", validators=[DataRequired(), Length(max=100), plain_text])
    family_name = StringField("Family name", validators=[DataRequired(), Length(max=100), plain_text])
    gender = SelectField(
        "Gender",
        description="Used only for the gender statistics that UN meetings report.",
        choices=[SelectChoice("", "Choose…")] + [SelectChoice(g.value, label) for g, label in GENDER_LABELS.items()],
        validators=[DataRequired(message="Choose one; “Prefer not to say” is a choice.")],
    )
    email = EmailField(
        "Email",
        description="The member's own address: the link to choose a password goes there.",
        validators=[DataRequired(), Length(max=254), Email(check_deliverability=False)],
    )
    function = SelectField(
        "Function in the delegation",
        choices=[SelectChoice(f.value, label) for f, label in FUNCTION_LABELS.items()],
        default=Function.ADVISER.value,
    )
    segments = MultiCheckboxField(
        "Segments attended",
        coerce=int,
        validators=[DataRequired("Choose at least one segment.")],
    )
    online_role = SelectField(
        "Role in the online segment",
        description="One designated speaker per delegation takes the floor online; the others follow as viewers.",
        choices=ROLE_CHOICES,
        default=OnlineRole.VIEWER.value,
    )


class OnlineRoleForm(FlaskForm):
    online_role = SelectField("Role in the online segment", choices=ROLE_CHOICES)


class NoteVerbaleForm(FlaskForm):
    letter = FileField(
        "Note verbale (PDF)",
        description="One letter for the whole delegation, from the Ministry of Foreign Affairs or the Permanent "
        "Mission. A new upload replaces the previous one.",
        validators=[FileRequired("Choose the PDF of the note verbale.")],
        render_kw={"accept": "application/pdf,.pdf"},
    )


class CredentialsForm(FlaskForm):
    status = SelectField(
        "Change to",
        choices=[SelectChoice(status.value, label) for status, label in CREDENTIALS_LABELS.items()],
    )
