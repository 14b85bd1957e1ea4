"""QR codes as inline SVG, for provisioning URIs and badges."""

from __future__ import annotations

import qrcode
import qrcode.image.svg


def qr_svg(data: str) -> str:
    """An SVG element (no XML declaration) that draws data as a QR code."""
    image = qrcode.make(
        data,
        image_factory=qrcode.image.svg.SvgPathImage,
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        border=4,
    )
    svg = image.to_string(encoding="unicode")
    # Sized by CSS, not by the millimetres qrcode writes.
    return svg.replace(' width="', ' data-width="', 1).replace(' height="', ' data-height="', 1)
