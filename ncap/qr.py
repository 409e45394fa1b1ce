"""The thing's claim QR code (XEP-0347 §6.4): drawn for a terminal, saved as PNG/SVG, read back.

The claim URI carries the claim ``KEY``: whoever scans the code can claim the thing. The files
:func:`save_qr` writes are therefore private (mode 0600) unless the caller asks otherwise, and
callers should put them in a directory only the gateway's user can read (e.g. the state
directory), not in a shared or web-served one.

Rendering uses segno (error correction level M, the standard 4-module quiet zone); reading uses
zxing-cpp on an image opened with Pillow.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import segno
import zxingcpp
from PIL import Image, UnidentifiedImageError

from ncap.errors import QrError

__all__ = ["PNG_SCALE", "QUIET_ZONE", "decode_qr_image", "save_qr", "terminal_qr"]

QUIET_ZONE = 4
# Pixels per module in the PNG: a version-7 claim code is then 424 px, easy for a phone.
PNG_SCALE = 8
ERROR_LEVEL = "m"
_QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)

# Two modules per character cell, top and bottom: cells are about twice as tall as wide, so the
# modules come out square.
_HALF_BLOCKS = {
    (False, False): " ",
    (True, False): "\u2580",  # upper half block
    (False, True): "\u2584",  # lower half block
    (True, True): "\u2588",  # full block
}


def _make(text: str) -> segno.QRCode:
    if not text:
        raise QrError("nothing to put in a QR code (empty text)")
    try:
        return segno.make(text, error=ERROR_LEVEL, micro=False)
    except segno.DataOverflowError:
        raise QrError(f"text of {len(text)} characters does not fit in a QR code") from None


def terminal_qr(text: str, *, invert: bool = False, border: int = QUIET_ZONE) -> str:
    """``text`` as a QR code of half-block characters, ``border`` light modules around it.

    Block characters paint the dark modules, so the code is right when the terminal (or paper)
    shows dark text on a light background; on a light-on-dark terminal pass ``invert=True`` to
    paint the light modules instead (most phone scanners also read the inverted code). Every line
    has the same width (the quiet zone is spaces); there is no trailing newline.
    """
    if border < 0:
        raise QrError("the quiet zone cannot be negative")
    dark = [[bool(module) for module in row] for row in _make(text).matrix_iter(border=border)]
    if len(dark) % 2:
        dark.append([False] * len(dark[0]))  # one more row of quiet zone
    lines = []
    for top, bottom in zip(dark[::2], dark[1::2], strict=True):
        lines.append(
            "".join(
                _HALF_BLOCKS[upper != invert, lower != invert]
                for upper, lower in zip(top, bottom, strict=True)
            )
        )
    return "\n".join(lines)


def save_qr(
    text: str,
    directory: Path,
    stem: str = "claim",
    *,
    mode: int = 0o600,
    scale: int = PNG_SCALE,
) -> tuple[Path, Path]:
    """Write ``text`` as ``directory/stem.png`` (``scale`` px per module) and ``stem.svg``.

    Each file is written to a temporary file in ``directory`` and renamed over the target, so a
    reader never sees half a file. ``mode`` defaults to 0600 because the claim URI holds the claim
    key (see the module notes). Returns ``(png_path, svg_path)``; :class:`QrError` if the text
    does not fit, ``stem`` is not a plain file name, or a file cannot be written.
    """
    if stem in ("", ".", "..") or Path(stem).name != stem or "\x00" in stem:
        raise QrError(f"QR file stem {stem!r} must be a plain file name")
    if scale < 1:
        raise QrError("the PNG scale must be at least 1 pixel per module")
    code = _make(text)
    rendered = {}
    for kind in ("png", "svg"):
        buffer = io.BytesIO()
        # No title or description: the SVG must not repeat the key in readable metadata.
        code.save(buffer, kind=kind, scale=scale, border=QUIET_ZONE)
        rendered[kind] = buffer.getvalue()
    png, svg = directory / f"{stem}.png", directory / f"{stem}.svg"
    _write_atomically(png, rendered["png"], mode)
    _write_atomically(svg, rendered["svg"], mode)
    return png, svg


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise QrError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "wb") as file:
            # fchmod, not the umask: the mode must hold whatever umask the service runs under.
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise QrError(f"cannot write {path}: {exc.strerror or exc}") from exc


def decode_qr_image(path: Path) -> str:
    """The text of the first QR code found in the image at ``path`` (PNG, JPEG, ... any format
    Pillow reads; a photo, slightly rotated or scaled, will do).

    :class:`QrError` if the file cannot be read, is not an image, or shows no readable QR code.
    """
    try:
        with Image.open(path) as image:
            image.load()
            gray = _on_white(image).convert("L")
    except UnidentifiedImageError:
        raise QrError(f"{path}: not an image") from None
    except OSError as exc:
        raise QrError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        # Pillow's decoders report corrupt or oversized input with assorted exception types.
        raise QrError(f"{path}: cannot decode image: {exc}") from exc
    for barcode in zxingcpp.read_barcodes(gray, formats=_QR_ONLY):
        if barcode.valid:
            return barcode.text
    raise QrError(f"{path}: no readable QR code in the image")


def _on_white(image: Image.Image) -> Image.Image:
    """``image`` with any transparency flattened onto white: a transparent PNG's background
    would otherwise turn black, and the dark modules would vanish into it."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        background.alpha_composite(rgba)
        return background
    return image
