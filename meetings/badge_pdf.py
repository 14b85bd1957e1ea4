"""Printable badges: one A6 page per badge with the name, delegation, category band, number and QR code.

Pure: takes plain values (BadgeRow) and writes a PDF; no Flask, no database. Text is set in the standard
Helvetica fonts, which every PDF reader has and which cover Windows-1252 (all of Latin-1, plus Œ, Š, Ž, €
and typographic quotes). Anything outside it is printed as "?" rather than silently garbled: reportlab
would otherwise draw a wrong glyph or borrow one from the Symbol font.
"""

from __future__ import annotations

import io
import itertools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.lib.colors import CMYKColor, Color
from reportlab.lib.pagesizes import A6
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

PAGE_WIDTH, PAGE_HEIGHT = A6  # 105 x 148 mm, portrait
MARGIN = 7 * mm
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN

# The square kept for the QR code: the symbol plus its quiet zone, four light modules on each side as
# ISO/IEC 18004 asks, where nothing else is drawn. A badge token (35-50 characters) gives a symbol of
# 33-37 modules, so the symbol itself is 48-49 mm wide: enough for a phone or a gate scanner at arm's length.
QR_AREA = 60 * mm
QUIET_MODULES = 4
# Q recovers a quarter of the symbol: badges get scratched, folded and half-covered by lanyard clips.
QR_LEVEL = "Q"

BAND_HEIGHT = 20 * mm
NUMBER_BASELINE = BAND_HEIGHT + 3 * mm
QR_AREA_BOTTOM = 28 * mm
DELEGATION_BOX = (89 * mm, 99 * mm)
NAME_BOX = (100 * mm, 126 * mm)
RULE_Y = 127.5 * mm
HEADER_TOP = PAGE_HEIGHT - 6 * mm
HEADER_HEIGHT = HEADER_TOP - RULE_Y - 1.5 * mm

REGULAR = "Helvetica"
BOLD = "Helvetica-Bold"
LEADING = 1.2
ELLIPSIS = "…"
REPLACEMENT = "?"

WHITE = CMYKColor(0, 0, 0, 0)
BLACK = CMYKColor(0, 0, 0, 1)


@dataclass(frozen=True, slots=True)
class Band:
    """A category's band: a process colour that prints the same everywhere, and the text colour readable on it."""

    fill: Color
    text: Color
    # The same colour for screens, so the web pages match the printed badge.
    rgb: str


# One distinct colour per category; the label on the band keeps them apart for colour-blind readers too.
BANDS = {
    "party": Band(CMYKColor(1, 0.6, 0, 0), WHITE, "#0066b3"),
    "non_party_state": Band(CMYKColor(0, 0.55, 1, 0), BLACK, "#f39200"),
    "igo": Band(CMYKColor(0.65, 0.9, 0, 0), WHITE, "#6f2c91"),
    "ngo": Band(CMYKColor(0.85, 0.1, 1, 0.35), WHITE, "#1b7a34"),
    "un_body": Band(CMYKColor(0, 0.1, 1, 0), BLACK, "#ffdd00"),
    "media": Band(CMYKColor(0, 1, 1, 0.1), WHITE, "#d4001a"),
    "secretariat": Band(CMYKColor(0, 0, 0, 1), WHITE, "#1a1a1a"),
}
UNKNOWN_BAND = Band(CMYKColor(0, 0, 0, 0.45), BLACK, "#8c8c8c")


@dataclass(frozen=True, slots=True)
class BadgeRow:
    """What one badge shows, as plain values."""

    meeting_code: str
    meeting_title: str
    title: str
    given_name: str
    family_name: str
    delegation: str
    category: str
    category_label: str
    number: str
    token: str


# Text --------------------------------------------------------------------------------------


def _printable_char(ch: str) -> bool:
    if ch in "\t\r\n":
        return True
    if ord(ch) < 32:
        return False
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """The text as the badge font can print it: composed accents kept, anything else shown as "?"."""
    text = unicodedata.normalize("NFC", text or "")
    cleaned = "".join(ch if _printable_char(ch) else REPLACEMENT for ch in text)
    return " ".join(cleaned.split())


def unprintable(text: str) -> list[str]:
    """The characters of text that a badge prints as "?", in order of appearance, each once."""
    seen: dict[str, None] = {}
    for ch in unicodedata.normalize("NFC", text or ""):
        if not _printable_char(ch):
            seen.setdefault(ch)
    return list(seen)


def _width(text: str, font: str, size: float) -> float:
    return stringWidth(text, font, size)


def _cut(word: str, font: str, size: float, width: float) -> int:
    """How many leading characters of word fit the width (at least one, so wrapping always advances)."""
    fits = 1
    for end in range(1, len(word) + 1):
        if _width(word[:end], font, size) > width:
            break
        fits = end
    return fits


def wrap(text: str, font: str, size: float, width: float, *, hyphens: bool = True) -> list[str]:
    """Greedy word wrap; a word wider than the line is broken after a hyphen (if hyphens), else between characters."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if _width(candidate, font, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while _width(word, font, size) > width:
            cut = _cut(word, font, size, width)
            # Compound names break after a hyphen when one fits on the line.
            hyphen = word.rfind("-", 0, cut) if hyphens else -1
            cut = hyphen + 1 if hyphen > 0 else cut
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _ellipsize(line: str, font: str, size: float, width: float) -> str:
    while line and _width(line + ELLIPSIS, font, size) > width:
        line = line[:-1].rstrip()
    return line + ELLIPSIS


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of text set in one font, at most max_lines lines, at most `largest` points."""

    text: str
    font: str
    largest: float
    max_lines: int


@dataclass(frozen=True, slots=True)
class Fitted:
    font: str
    size: float
    lines: tuple[str, ...]

    @property
    def height(self) -> float:
        return len(self.lines) * self.size * LEADING


def fit(parts: list[Part], width: float, height: float, smallest_scale: float = 0.4) -> list[Fitted]:
    """The parts wrapped and shrunk together until they fit the box; at the smallest size, cut with an ellipsis."""
    parts = [part for part in parts if part.text]
    steps = round((1 - smallest_scale) / 0.025)
    # Breaking a long compound name at its hyphens reads better than a larger size cut mid-word.
    for hyphens in (True, False):
        for step in range(steps + 1):
            scale = 1 - step * 0.025
            fitted = [
                Fitted(
                    part.font,
                    part.largest * scale,
                    tuple(wrap(part.text, part.font, part.largest * scale, width, hyphens=hyphens)),
                )
                for part in parts
            ]
            fits_lines = all(len(f.lines) <= part.max_lines for f, part in zip(fitted, parts, strict=True))
            if fits_lines and sum(f.height for f in fitted) <= height:
                return fitted
    # Too long even at the smallest size: keep what fits and mark the cut, so the page never overflows.
    cut = []
    for part in parts:
        size = part.largest * smallest_scale
        lines = wrap(part.text, part.font, size, width, hyphens=False)
        if len(lines) > part.max_lines:
            lines = lines[: part.max_lines]
            lines[-1] = _ellipsize(lines[-1], part.font, size, width)
        cut.append(Fitted(part.font, size, tuple(lines)))
    while sum(f.height for f in cut) > height and any(len(f.lines) > 1 for f in cut):
        longest = max(range(len(cut)), key=lambda i: len(cut[i].lines))
        f = cut[longest]
        shorter = list(f.lines[:-1])
        shorter[-1] = _ellipsize(shorter[-1], f.font, f.size, width)
        cut[longest] = Fitted(f.font, f.size, tuple(shorter))
    return cut


def _draw_centred(canvas: Canvas, fitted: list[Fitted], top: float, colour: Color = BLACK) -> float:
    """Draw the fitted lines centred on the page from top down; returns the y below the last line."""
    canvas.setFillColor(colour)
    y = top
    for block in fitted:
        canvas.setFont(block.font, block.size)
        for line in block.lines:
            # The baseline sits low in the line's slot so descenders stay inside it.
            canvas.drawCentredString(PAGE_WIDTH / 2, y - block.size * 0.95, line)
            y -= block.size * LEADING
    return y


def _draw_in_box(canvas: Canvas, parts: list[Part], box: tuple[float, float], colour: Color = BLACK) -> None:
    """Fit the parts into the full-width box (bottom, top) and centre them vertically in it."""
    bottom, top = box
    fitted = fit(parts, TEXT_WIDTH, top - bottom)
    used = sum(f.height for f in fitted)
    _draw_centred(canvas, fitted, top - (top - bottom - used) / 2, colour)


# Page --------------------------------------------------------------------------------------


def qr_modules(token: str) -> list[list[bool]]:
    """The QR symbol of the token as rows of dark (True) and light modules, from reportlab's encoder."""
    widget = QrCodeWidget(token, barLevel=QR_LEVEL, barBorder=QUIET_MODULES)
    widget.qr.make()
    return [[bool(module) for module in row] for row in widget.qr.modules]


def _draw_qr(canvas: Canvas, token: str) -> None:
    modules = qr_modules(token)
    count = len(modules)
    size = QR_AREA / (count + 2 * QUIET_MODULES)
    left = (PAGE_WIDTH - QR_AREA) / 2 + QUIET_MODULES * size
    top = QR_AREA_BOTTOM + QR_AREA - QUIET_MODULES * size
    # One path for the whole symbol: separate rectangles leave hairline seams on screens and some printers.
    path = canvas.beginPath()
    for r, row in enumerate(modules):
        c = 0
        for dark, run in itertools.groupby(row):
            length = len(list(run))
            if dark:
                path.rect(left + c * size, top - (r + 1) * size, length * size, size)
            c += length
    canvas.setFillColor(BLACK)
    canvas.drawPath(path, stroke=0, fill=1)


def _draw_badge(canvas: Canvas, row: BadgeRow) -> None:
    band = BANDS.get(row.category, UNKNOWN_BAND)

    # Header: the meeting, with a thin rule in the category colour (visible when the badge hangs reversed).
    header = [
        Part(printable(row.meeting_code), BOLD, 13, 1),
        Part(printable(row.meeting_title), REGULAR, 7.5, 2),
    ]
    _draw_centred(canvas, fit(header, TEXT_WIDTH, HEADER_HEIGHT, smallest_scale=0.7), HEADER_TOP)
    canvas.setFillColor(band.fill)
    canvas.rect(MARGIN, RULE_Y, TEXT_WIDTH, 0.8 * mm, stroke=0, fill=1)

    # The name: title and given names above, the family name in bold below, shrunk together to fit.
    given = " ".join(part for part in (row.title, row.given_name) if part)
    _draw_in_box(
        canvas,
        [Part(printable(given), REGULAR, 20, 2), Part(printable(row.family_name), BOLD, 26, 3)],
        NAME_BOX,
    )
    _draw_in_box(canvas, [Part(printable(row.delegation), BOLD, 13, 2)], DELEGATION_BOX)

    _draw_qr(canvas, row.token)

    canvas.setFillColor(BLACK)
    canvas.setFont(BOLD, 11)
    canvas.drawCentredString(PAGE_WIDTH / 2, NUMBER_BASELINE, printable(row.number))

    canvas.setFillColor(band.fill)
    canvas.rect(0, 0, PAGE_WIDTH, BAND_HEIGHT, stroke=0, fill=1)
    label = fit([Part(printable(row.category_label).upper(), BOLD, 20, 2)], TEXT_WIDTH, BAND_HEIGHT - 5 * mm)
    used = sum(f.height for f in label)
    _draw_centred(canvas, label, BAND_HEIGHT - (BAND_HEIGHT - used) / 2, band.text)


def write_badges(rows: Iterable[BadgeRow], out: BinaryIO, *, title: str = "Badges") -> int:
    """Write a PDF with one A6 page per badge to out; returns the number of pages."""
    canvas = Canvas(out, pagesize=A6, pageCompression=1)
    canvas.setTitle(printable(title))
    canvas.setCreator("COP Registration")
    pages = 0
    for row in rows:
        _draw_badge(canvas, row)
        canvas.showPage()
        pages += 1
    if not pages:
        raise ValueError("There are no badges to print.")
    canvas.save()
    return pages


def badges_pdf(rows: Iterable[BadgeRow], *, title: str = "Badges") -> bytes:
    """The PDF of the badges, as bytes."""
    out = io.BytesIO()
    write_badges(rows, out, title=title)
    return out.getvalue()
