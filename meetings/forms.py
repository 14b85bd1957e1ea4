"""Registration and secretariat forms: shape only; the services decide."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    Length,
    Optional,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from auth.forms import password_rules
from auth.models import GENDER_LABELS
from auth.passwords import HINT
from meetings.models import CATEGORY_LABELS, FUNCTION_LABELS, Category

TITLES = ["", "Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "H.E."]
MARKUP = set("<>")


def plain_text(form, field) -> None:
    """Names are shown on badges and exports: no markup, no control characters."""
    value = field.data or ""
    if any(ch in MARKUP for ch in value) or any(ord(ch) < 32 and ch not in "\t\r\n" for ch in value):
        raise ValidationError("Use letters, spaces and punctuation only (no < or > and no control characters).")


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RegistrationForm(FlaskForm):
    title = SelectField("Title", choices=[SelectChoice(t, t or "—") for t in TITLES], validators=[Optional()])
    given_name = StringField("Given name", validators=[DataRequired(), Length(max=100), plain_text])
    family_name = StringField("Family name", validators=[DataRequired(), Length(max=100), plain_text])
    email = EmailField(
        "Email",
        validators=[DataRequired(), Length(max=254), Email(check_deliverability=False)],
    )
    # Length, common passwords, not the email or names on this form: auth.passwords.password_problem.
    password = PasswordField("Password", description=HINT, validators=[DataRequired(), password_rules])
    confirm = PasswordField(
        "Repeat the password",
        validators=[
            DataRequired(),
            EqualTo("password", message="The passwords differ."),
        ],
    )
    gender = SelectField(
        "Gender",
        description="Used only for the gender statistics that UN meetings report.",
        choices=[SelectChoice("", "Choose…")] + [SelectChoice(g.value, label) for g, label in GENDER_LABELS.items()],
        validators=[DataRequired(message="Choose one; “Prefer not to say” is a choice.")],
    )
    category = SelectField("Category", choices=[SelectChoice(c.value, label) for c, label in CATEGORY_LABELS.items()])
    # No Optional(): it would stop the chain before validate_party / validate_organization run.
    party = SelectField("Party represented", validate_choice=False)
    organization = StringField(
        "State or organization represented",
        description="For observers: the non-Party State, organization or media outlet.",
        validators=[Length(max=200), plain_text],
    )
    function = SelectField(
        "Function in the delegation",
        choices=[SelectChoice(f.value, label) for f, label in FUNCTION_LABELS.items()],
    )
    segments = MultiCheckboxField(
        "Segments attended",
        coerce=int,
        validators=[DataRequired("Choose at least one segment.")],
    )
    nomination_ref = StringField(
        "Nomination letter reference",
        description="The number or date of the letter or note verbale that nominates you, if you have it.",
        validators=[Optional(), Length(max=200), plain_text],
    )
    # Checked by content (size, PDF) in meetings.letters, never by its name or the browser's content type.
    letter = FileField("Nomination letter (PDF)")

    def validate_party(self, field) -> None:
        if self.category.data == Category.PARTY.value and not field.data:
            raise ValidationError("Choose the Party you represent.")

    def validate_organization(self, field) -> None:
        if self.category.data != Category.PARTY.value and not (field.data or "").strip():
            raise ValidationError("Name the State or organization you represent.")


class CorrectionForm(RegistrationForm):
    """The details a participant may correct while the registration is pending: all but the email and password."""

    # None removes a field inherited from RegistrationForm; the letter has its own form.
    email = None
    password = None
    confirm = None
    letter = None


class LetterForm(FlaskForm):
    letter = FileField("Nomination letter (PDF)", validators=[FileRequired("Choose the PDF file of the letter.")])


class RejectForm(FlaskForm):
    reason = TextAreaField(
        "Reason (the delegate will read it)",
        validators=[DataRequired(), Length(max=500), plain_text],
    )


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token travels with it."""
