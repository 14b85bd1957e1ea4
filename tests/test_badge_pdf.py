"""Printed badges: A6 pages that show who the holder is and carry a QR code the gate reads and accepts."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pymupdf
import pytest
import sqlalchemy as sa
import zxingcpp
from conftest import csrf_token, login
from reportlab.lib.units import mm

import meetings.badge_views  # noqa: F401  (adds the badge pages to the meetings blueprint)
from auth.models import Role
from meetings import badge_pdf, badges, services
from meetings.models import Badge, Category, Function, Registration, RegistrationStatus

A6_POINTS = (105 * 72 / 25.4, 148 * 72 / 25.4)
CSS = Path(__file__).resolve().parent.parent / "static" / "css" / "badges.css"


def row(**changes) -> badge_pdf.BadgeRow:
    values = {
        "meeting_code": "COP-4",
        "meeting_title": "Fourth meeting of the Conference of the Parties to the Minamata Convention on Mercury",
        "title": "Dr.",
        "given_name": "María José",
        "family_name": "Núñez",
        "delegation": "Bolivia (Plurinational State of)",
        "category": "party",
        "category_label": "Party",
        "number": "COP4-00012",
        "token": "WzEyLDFd.not-a-real-signature-but-long-enough",
    }
    return badge_pdf.BadgeRow(**(values | changes))


def pages(pdf: bytes) -> list[pymupdf.Page]:
    return list(pymupdf.open(stream=pdf, filetype="pdf"))


def text(page: pymupdf.Page) -> str:
    return " ".join(page.get_text().split())


def qr_texts(page: pymupdf.Page) -> list[str]:
    """The QR codes on the page, as a scanner reads them from a 200 dpi greyscale image of it."""
    pixmap = page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY, alpha=False)
    image = memoryview(pixmap.samples).cast("B", (pixmap.height, pixmap.width))
    return [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def unaccented(name: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch)).lower()


def qr_rect(page: pymupdf.Page) -> pymupdf.Rect:
    """Where the QR symbol is drawn: the largest square filled shape on the page."""
    squares = [d["rect"] for d in page.get_drawings() if d.get("fill") and abs(d["rect"].width - d["rect"].height) < 1]
    return max(squares, key=lambda rect: rect.width)


# Pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "printed", "flagged"),
    [
        ("Núñez Ørsted Þór Œuvre Šimon", "Núñez Ørsted Þór Œuvre Šimon", []),
        ("Łukasz Wałęsa", "?ukasz Wa??sa", ["Ł", "ł", "ę"]),
        ("陈 伟", "? ?", ["陈", "伟"]),
        ("Ana\x00 \x1b Souza", "Ana? ? Souza", ["\x00", "\x1b"]),
        # Decomposed accents (as some keyboards send them) are composed first, so they print.
        ("Jose\u0301", "José", []),
    ],
)
def test_names_outside_the_font_print_visibly_as_question_marks(name, printed, flagged):
    assert badge_pdf.printable(name) == printed
    assert badge_pdf.unprintable(name) == flagged


@pytest.mark.parametrize("length", [1, 20, 60, 150, 400])
def test_any_name_fits_its_box(length):
    text = ("Wolfeschlegelsteinhausen-Bergerdorff " * 20)[:length].strip() or "A"
    parts = [badge_pdf.Part(text, badge_pdf.REGULAR, 20, 2), badge_pdf.Part(text, badge_pdf.BOLD, 26, 3)]
    fitted = badge_pdf.fit(parts, badge_pdf.TEXT_WIDTH, 26 * mm)
    assert sum(f.height for f in fitted) <= 26 * mm
    for block, part in zip(fitted, parts, strict=True):
        assert 1 <= len(block.lines) <= part.max_lines
        assert all(
            pymupdf.get_text_length(
                line, fontname="helv" if block.font == badge_pdf.REGULAR else "hebo", fontsize=block.size
            )
            <= badge_pdf.TEXT_WIDTH + 0.5
            for line in block.lines
        )


def test_each_category_has_its_own_readable_colour():
    assert set(badge_pdf.BANDS) == {category.value for category in Category}
    assert len({band.rgb for band in badge_pdf.BANDS.values()}) == len(badge_pdf.BANDS)

    def luminance(rgb: str) -> float:
        channels = [int(rgb[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    css = CSS.read_text()
    for category, band in badge_pdf.BANDS.items():
        text_rgb = "#ffffff" if band.text == badge_pdf.WHITE else "#000000"
        lighter, darker = sorted((luminance(band.rgb), luminance(text_rgb)), reverse=True)
        assert (lighter + 0.05) / (darker + 0.05) >= 4.5, category  # WCAG AA for the label
        # The web pages show the same colour as the printed band.
        assert f".band-{category} {{ background: {band.rgb}; color: {text_rgb[:4]}; }}" in css, category


# One badge ---------------------------------------------------------------------------------


def test_a_badge_is_an_a6_page_with_the_name_delegation_category_number_and_a_scannable_qr_code():
    [page] = pages(badge_pdf.badges_pdf([row()]))
    assert page.rect.width == pytest.approx(A6_POINTS[0], abs=0.5)
    assert page.rect.height == pytest.approx(A6_POINTS[1], abs=0.5)
    shown = text(page)
    for expected in ("COP-4", "Fourth meeting", "Dr. María José", "Núñez", "Bolivia (Plurinational State of)", "PARTY"):
        assert expected in shown
    assert "COP4-00012" in shown
    assert qr_texts(page) == [row().token]
    symbol = qr_rect(page)
    assert symbol.width >= 45 * mm
    # The quiet zone (four modules) around the symbol is clear of text.
    module = symbol.width / len(badge_pdf.qr_modules(row().token))
    quiet = pymupdf.Rect(symbol.x0 - 4 * module, symbol.y0 - 4 * module, symbol.x1 + 4 * module, symbol.y1 + 4 * module)
    assert quiet in page.rect
    for block in page.get_text("blocks"):
        assert not pymupdf.Rect(block[:4]).intersects(quiet), block[4]


@pytest.mark.parametrize(
    "changes",
    [
        {"given_name": "Wolfgang Amadeus Theophilus Maximilian Johann Chrysostomus " * 2, "title": "H.E."},
        {"family_name": "Hubertus-Blaine-Wolfeschlegelsteinhausenbergerdorff-Montgomery-Featherstonehaugh " * 3},
        {"delegation": "United Nations Educational, Scientific and Cultural Organization Regional Office " * 3},
        {"category": "un_body", "category_label": "UN body or specialized agency"},
        {"category": "unknown", "category_label": "Someone"},
        {"given_name": "Łukasz 陈", "family_name": "Wałęsa", "meeting_title": "Ωμέγα"},
    ],
)
def test_long_or_unusual_values_stay_on_the_page_and_the_code_still_scans(changes):
    [page] = pages(badge_pdf.badges_pdf([row(**changes)]))
    for x0, y0, x1, y1, content, *_ in page.get_text("blocks"):
        assert x0 >= badge_pdf.MARGIN - 1 and x1 <= page.rect.width - badge_pdf.MARGIN + 1, content
        assert y0 >= 0 and y1 <= page.rect.height, content
    assert qr_texts(page) == [row().token]


def test_characters_outside_the_font_show_as_question_marks_without_failing():
    [page] = pages(badge_pdf.badges_pdf([row(given_name="Łukasz 陈", family_name="Wałęsa")]))
    shown = text(page)
    assert "?ukasz ?" in shown and "Wa??sa" in shown


def test_an_empty_print_run_is_refused():
    with pytest.raises(ValueError, match="no badges"):
        badge_pdf.badges_pdf([])


# Real badges, through the gate's check -----------------------------------------------------


@pytest.fixture
def desk(app, make_user, clock):
    user, secret = make_user(Role.SECRETARIAT, email="printing@example.org")
    client = app.test_client()
    login(client, user.email, "correct horse battery", secret, clock)
    return client


@pytest.fixture
def attendee(db, cop4, make_user, clock):
    """Factory: an approved registration with the given name, category, delegation and segments."""

    def make(given, family, *, party=None, category=Category.PARTY, organization=None, segments=None, approve=True):
        user, _ = make_user()
        user.given_name, user.family_name = given, family
        registration = services.register(
            db,
            meeting=cop4,
            user=user,
            category=category,
            function=Function.ADVISER,
            segment_ids=[s.id for s in (segments or cop4.segments)],
            party_code=party,
            organization=organization,
            now=clock(),
        )
        if approve:
            services.approve(db, registration, user, clock())
        db.commit()
        return registration

    return make


def test_a_downloaded_badge_names_its_holder_and_its_code_passes_the_gate(app, db, desk, attendee):
    registration = attendee("Sofía", "García", party="ESP")
    badge = registration.badges[0]
    response = desk.get(f"/badges/{badge.id}.pdf")
    [page] = pages(response.data)
    shown = text(page)
    assert "Sofía" in shown and "García" in shown and "Spain" in shown and "PARTY" in shown and badge.number in shown
    [token] = qr_texts(page)
    assert badges.badge_for_token(db, app.secret_key, token) == badge


def test_a_segment_print_run_has_every_valid_badge_by_delegation_then_name(app, db, cop4, desk, attendee, clock):
    online, in_person = cop4.segments
    zara = attendee("Zara", "Ahmed", party="ZMB")
    ana = attendee("Ana", "Zimmermann", party="AUT")
    bea = attendee("Bea", "Müller", party="AUT")
    eva = attendee("Eva", "Émond", party="AUT")
    press = attendee("Kwame", "Mensah", category=Category.MEDIA, organization="Earth Negotiations Bulletin")
    attendee("Lars", "Berg", party="NOR", segments=[online])
    attendee("Piotr", "Nowak", party="POL", approve=False)
    revoked = attendee("Mei", "Chen", party="CHN")
    badges.revoke(db, revoked.badges[0], zara.user, "Left the delegation", clock())
    reissued = attendee("Léa", "Dubois", party="FRA")
    new_badge = badges.reissue(db, reissued, zara.user, "Damaged", clock())
    db.commit()
    demo = db.scalars(
        sa.select(Registration).where(Registration.status == RegistrationStatus.APPROVED, Registration.id < zara.id)
    ).all()

    response = desk.get(f"/secretariat/meetings/COP-4/badges/print?segment={in_person.id}")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == "attachment; filename=COP-4-in-person-segment-badges.pdf"
    assert response.headers["Cache-Control"] == "private, no-store"
    printed = pages(response.data)
    expected = sorted(
        [zara, ana, bea, eva, press, reissued, *(r for r in demo if in_person in r.segments)],
        key=lambda r: (r.represents.lower(), unaccented(r.user.family_name), r.user.given_name.lower()),
    )
    assert len(printed) == len(expected)
    for page, registration in zip(printed, expected, strict=True):
        assert page.rect.width == pytest.approx(A6_POINTS[0], abs=0.5)
        shown = text(page)
        assert registration.user.family_name in shown and registration.represents in shown
        [token] = qr_texts(page)
        badge = badges.badge_for_token(db, app.secret_key, token)
        assert badge == badges.current_badge(registration)
        assert badge.number in shown
    # Austria first; accents do not push Émond after Zimmermann.
    assert [r.user.family_name for r in expected[:3]] == ["Émond", "Müller", "Zimmermann"]
    assert "MEDIA" in text(printed[expected.index(press)])
    assert new_badge.number in text(printed[expected.index(reissued)])
    everything = " ".join(text(p) for p in printed)
    assert "Berg" not in everything and "Nowak" not in everything and "Chen" not in everything


def test_a_long_print_run_comes_in_parts_that_add_up_to_the_whole(app, db, cop4, desk, attendee, monkeypatch):
    online = cop4.segments[0]
    for given, family, party in [
        ("A", "Ahmed", "ZMB"),
        ("B", "Berg", "NOR"),
        ("C", "Chen", "CHN"),
        ("D", "Dubois", "FRA"),
    ]:
        attendee(given, family, party=party)
    path = f"/secretariat/meetings/COP-4/badges/print?segment={online.id}"
    whole = [qr_texts(page) for page in pages(desk.get(path).data)]
    monkeypatch.setattr(badges, "PRINT_PART_SIZE", 2)
    parts = -(-len(whole) // 2)
    listing = desk.get(f"/secretariat/meetings/COP-4/badges?segment={online.id}").get_data(as_text=True)
    assert f"Print in {parts} parts:" in listing and f"{path}&amp;part={parts}" in listing
    printed = []
    for part in range(1, parts + 1):
        response = desk.get(f"{path}&part={part}")
        assert response.headers["Content-Disposition"] == (
            f"attachment; filename=COP-4-online-segment-badges-part-{part}-of-{parts}.pdf"
        )
        printed += [qr_texts(page) for page in pages(response.data)]
    assert printed == whole
    assert desk.get(f"{path}&part={parts + 1}").status_code == 404
    assert desk.get(f"{path}&part=0").status_code == 404


def test_old_tokens_of_printed_badges_stop_working(app, db, desk, attendee, clock):
    kept, lost = attendee("Amina", "Diallo", party="SEN"), attendee("Olena", "Kovalenko", party="ROU")
    old_tokens = {}
    for registration in (kept, lost):
        [page] = pages(desk.get(f"/badges/{registration.badges[0].id}.pdf").data)
        [old_tokens[registration.id]] = qr_texts(page)
    badges.reissue(db, kept, kept.user, "Damaged", clock())
    badges.revoke(db, lost.badges[0], kept.user, "Lost", clock())
    db.commit()
    for token in old_tokens.values():
        with pytest.raises(services.CheckInError) as refused:
            badges.badge_for_token(db, app.secret_key, token)
        assert refused.value.code == "revoked_badge"
    [page] = pages(desk.get(f"/badges/{kept.badges[-1].id}.pdf").data)
    [token] = qr_texts(page)
    assert badges.badge_for_token(db, app.secret_key, token) == kept.badges[-1]


def test_a_print_run_needs_a_segment_of_the_meeting_and_something_to_print(db, cop4, desk):
    assert desk.get("/secretariat/meetings/COP-4/badges/print").status_code == 404
    assert desk.get("/secretariat/meetings/COP-4/badges/print?segment=999").status_code == 404
    online = cop4.segments[0]
    for badge in db.scalars(sa.select(Badge)):
        badge.revoked_at = badge.issued_at
    db.commit()
    response = desk.get(f"/secretariat/meetings/COP-4/badges/print?segment={online.id}")
    assert response.headers["Location"] == f"/secretariat/meetings/COP-4/badges?segment={online.id}"
    page = desk.get(response.headers["Location"]).get_data(as_text=True)
    assert "No valid badges to print for the online segment." in page
    assert csrf_token(desk, "/secretariat/meetings/COP-4/badges")
