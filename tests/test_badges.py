"""Badge tokens: genuine ones name their badge; forged, altered, revoked and replaced ones are refused."""

import datetime as dt

import pytest

from auth.badges import BadgeRef, badge_token
from meetings import badges, services
from meetings.models import Badge

KEY = "dev-only-secret-key-change-me"


@pytest.fixture
def badge(db, make_delegate):
    user, _ = make_delegate("CHE")
    return services.registration_of(db, 1, user.id).badges[0]


def test_a_genuine_token_names_its_badge(app, db, badge):
    assert badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, badge)) == badge


@pytest.mark.parametrize("token", ["", None, 42, "x" * 500, "not-a-token", "WzEsMV0.tampered"])
def test_unreadable_or_unsigned_tokens_are_forged(app, db, badge, token):
    with pytest.raises(services.CheckInError) as refused:
        badges.badge_for_token(db, app.secret_key, token)
    assert refused.value.code == "forged_badge"


def test_a_token_signed_with_another_key_or_altered_is_forged(app, db, badge):
    foreign = badge_token("someone else's key", BadgeRef(badge.id, badge.version))
    genuine = badges.token_for(app.secret_key, badge)
    altered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    for token in (foreign, altered):
        with pytest.raises(services.CheckInError) as refused:
            badges.badge_for_token(db, app.secret_key, token)
        assert refused.value.code == "forged_badge"


def test_revoked_and_replaced_badges_stop_working(app, db, badge, clock):
    old_token = badges.token_for(app.secret_key, badge)
    replacement = Badge(registration=badge.registration, number=badge.number + "-2", version=2, issued_at=clock())
    db.add(replacement)
    db.commit()
    with pytest.raises(services.CheckInError) as refused:
        badges.badge_for_token(db, app.secret_key, old_token)
    assert refused.value.code == "revoked_badge"
    assert badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, replacement)) == replacement
    replacement.revoked_at = clock() + dt.timedelta(seconds=1)
    db.commit()
    with pytest.raises(services.CheckInError) as refused:
        badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, replacement))
    assert refused.value.code == "revoked_badge"
    assert badges.current_badge(badge.registration) is None
