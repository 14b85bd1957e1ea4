"""Nomination letters on disk: PDF checks by content, random names outside the web root, files kept only on commit."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from meetings.models import Document, DocumentKind
from meetings.services import MeetingError

log = logging.getLogger(__name__)

# The PDF specification puts %%EOF at the end; readers accept it within the last kilobyte.
EOF_WINDOW = 1024
STORED_NAME_RE = re.compile(r"^[0-9a-f]{32}$")
UNSAFE_IN_NAMES = set('<>:"/\\|?*')


class Upload(Protocol):
    """What a browser sends for a file field (werkzeug's FileStorage)."""

    filename: str | None
    stream: BinaryIO


@dataclass(frozen=True, slots=True)
class Letter:
    """An accepted upload: its bytes, the name it had on the uploader's computer (cleaned), and its digest."""

    data: bytes
    original_name: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def human_size(size: int) -> str:
    """A byte count as people read it: 5 MB, 120 KB, 900 bytes."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def is_pdf(data: bytes) -> bool:
    """True if the bytes look like a whole PDF: the header at the start and the end-of-file marker at the end."""
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-EOF_WINDOW:]


def clean_name(filename: str | None) -> str:
    """The uploader's file name, fit to show and to offer as a download name: no path, no control characters."""
    name = unicodedata.normalize("NFC", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if ch.isprintable() and ch not in UNSAFE_IN_NAMES)
    name = " ".join(name.split()).strip(" .")
    if not name.lower().endswith(".pdf"):
        name = f"{name or 'nomination-letter'}.pdf"
    if len(name) > 120:
        name = name[:116].rstrip(" .") + ".pdf"
    return name


def read_letter(upload: Upload | None, max_bytes: int, what: str = "your nomination letter") -> Letter | None:
    """The letter in an upload field, None if no file was chosen; refused if empty, too large or not a PDF."""
    if upload is None or not upload.filename:
        return None
    # One byte more than allowed is enough to know it is too large, without reading all of it.
    data = upload.stream.read(max_bytes + 1)
    if not data:
        raise MeetingError("letter_empty", f"The file is empty. Choose the PDF of {what}.")
    if len(data) > max_bytes:
        raise MeetingError(
            "letter_too_large",
            f"The file is larger than {human_size(max_bytes)}. Scan the letter at a lower resolution and try again.",
        )
    if not is_pdf(data):
        raise MeetingError(
            "letter_not_pdf",
            f"This file is not a PDF (whatever its name says). Save or scan {what} as a PDF and upload that.",
        )
    return Letter(data=data, original_name=clean_name(upload.filename))


def document_path(config: dict, instance_path: str, stored_name: str) -> Path:
    """Where a stored document's file is."""
    return path_of(folder_of(config, instance_path), stored_name)


def folder_of(config: dict, instance_path: str) -> Path:
    """Where letters are kept: UPLOAD_FOLDER, or uploads/ in the instance folder; never under static/."""
    return Path(config.get("UPLOAD_FOLDER") or Path(instance_path) / "uploads")


def path_of(folder: Path, stored_name: str) -> Path:
    """The file of a stored name; names are ours (random hex), so anything else is refused."""
    if not STORED_NAME_RE.match(stored_name):
        raise ValueError("not a stored letter name")
    return folder / stored_name


@contextmanager
def kept_if_committed(folder: Path, letter: Letter | None) -> Iterator[str | None]:
    """Write the letter under a new random name; if the block raises (say, the commit fails), delete it again.

    The bytes go to a temporary name first and are renamed into place once complete, so a stored name never
    holds half a file. The block records the name in the database and commits: if it raises, the file goes;
    if it returns, the row and the file exist together. Yields None (and writes nothing) without a letter.
    """
    if letter is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(16)
    final = path_of(folder, name)
    partial = folder / f".{name}.part"
    try:
        with open(partial, "xb") as file:
            file.write(letter.data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        yield name
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def discard(folder: Path, stored_name: str | None) -> None:
    """Delete a letter whose row is gone (a replaced letter), after the commit that removed the row."""
    if stored_name is None:
        return
    try:
        path_of(folder, stored_name).unlink(missing_ok=True)
    except OSError as exc:
        # The row is already gone: a leftover file is harmless, and must not undo the committed change.
        log.warning("could not delete replaced letter %s: %s", stored_name, type(exc).__name__)


def new_document(
    letter: Letter,
    stored_name: str,
    *,
    kind: DocumentKind,
    meeting_id: int,
    uploaded_by_id: int,
    now: dt.datetime,
    party_id: int | None = None,
) -> Document:
    """The row that records a letter stored under stored_name."""
    return Document(
        meeting_id=meeting_id,
        party_id=party_id,
        kind=kind,
        uploaded_by_id=uploaded_by_id,
        original_name=letter.original_name,
        stored_name=stored_name,
        size=letter.size,
        sha256=letter.sha256,
        uploaded_at=now,
    )
