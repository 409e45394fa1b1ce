"""The claim QR code: terminal drawing, PNG/SVG files, decoding images (zxing-cpp + Pillow)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageFilter

from ncap.errors import NcapError, QrError
from ncap.qr import PNG_SCALE, QUIET_ZONE, decode_qr_image, save_qr, terminal_qr
from xep.xep_0347.model import MetaTag
from xep.xep_0347.uri import claim_uri, parse_claim_uri

CLAIM = claim_uri(
    [
        MetaTag("SN", "98734238472634"),
        MetaTag("MAN", "www.example.org"),
        MetaTag("MODEL", "Device"),
        MetaTag("V", 1.0),
        MetaTag("KEY", "3453485763440213840928"),
    ],
    "discovery.example.org",
)
TOP = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}


def rasterise(drawing: str, *, painted_dark: bool = True, pixels: int = 6) -> Image.Image:
    """The terminal drawing as a picture, each character cell two square modules high."""
    lines = drawing.split("\n")
    width, height = len(lines[0]), 2 * len(lines)
    image = Image.new("L", (width * pixels, height * pixels), 255 if painted_dark else 0)
    ink = 0 if painted_dark else 255
    for row, line in enumerate(lines):
        for column, char in enumerate(line):
            for half, painted in enumerate(TOP[char]):
                if painted:
                    x, y = column * pixels, (2 * row + half) * pixels
                    image.paste(ink, (x, y, x + pixels, y + pixels))
    return image


def read_strictly(image: Image.Image) -> str | None:
    """Decode without zxing's inversion fallback, so the polarity must be right."""
    barcodes = zxingcpp.read_barcodes(image, try_invert=False)
    return barcodes[0].text if barcodes else None


# -- terminal -------------------------------------------------------------------------------------


def test_terminal_qr_is_a_real_qr_code_dark_on_light() -> None:
    drawing = terminal_qr(CLAIM)
    assert read_strictly(rasterise(drawing)) == CLAIM
    assert parse_claim_uri(read_strictly(rasterise(drawing)) or "").key == "3453485763440213840928"


def test_terminal_qr_inverted_reads_light_on_dark() -> None:
    drawing = terminal_qr(CLAIM, invert=True)
    assert read_strictly(rasterise(drawing, painted_dark=False)) == CLAIM
    # Printed on paper the inverted drawing is a negative: only an inverting reader gets it.
    assert read_strictly(rasterise(drawing)) is None


def test_terminal_qr_shape() -> None:
    drawing = terminal_qr(CLAIM)
    lines = drawing.split("\n")
    assert not drawing.endswith("\n")
    assert set(drawing) <= set(TOP) | {"\n"}
    assert len({len(line) for line in lines}) == 1
    modules = len(lines[0]) - 2 * QUIET_ZONE
    assert (modules - 17) % 4 == 0  # a QR symbol is 17 + 4 * version modules wide
    assert len(lines) == (modules + 2 * QUIET_ZONE + 1) // 2
    # The quiet zone: blank first rows and blank margins on every line.
    assert lines[0].strip() == ""
    assert all(line[:QUIET_ZONE] == " " * QUIET_ZONE for line in lines)
    assert all(line[-QUIET_ZONE:] == " " * QUIET_ZONE for line in lines)


def test_terminal_qr_small_border_still_reads() -> None:
    drawing = terminal_qr("iotdisco:KEY=1", border=1)
    assert len(drawing.split("\n")[0]) == 21 + 2
    assert read_strictly(rasterise(drawing)) == "iotdisco:KEY=1"


@pytest.mark.parametrize("text", ["", "x" * 8000])
def test_terminal_qr_refuses_what_cannot_be_a_qr(text: str) -> None:
    with pytest.raises(QrError):
        terminal_qr(text)


# -- files ----------------------------------------------------------------------------------------


def test_save_then_decode_round_trip(tmp_path: Path) -> None:
    png, svg = save_qr(CLAIM, tmp_path)
    assert (png, svg) == (tmp_path / "claim.png", tmp_path / "claim.svg")
    assert decode_qr_image(png) == CLAIM
    with Image.open(png) as image:
        modules = image.width // PNG_SCALE - 2 * QUIET_ZONE
        assert image.width % PNG_SCALE == 0
        assert modules >= 21
    text = svg.read_text()
    assert text.startswith("<?xml")
    assert "<svg" in text
    assert "3453485763440213840928" not in text  # the key only as modules, not as text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["claim.png", "claim.svg"]


def test_files_are_private_by_default(tmp_path: Path) -> None:
    png, svg = save_qr(CLAIM, tmp_path)
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert stat.S_IMODE(svg.stat().st_mode) == 0o600
    png, svg = save_qr(CLAIM, tmp_path, "public", mode=0o644)
    assert png.name == "public.png"
    assert stat.S_IMODE(png.stat().st_mode) == 0o644
    assert stat.S_IMODE(svg.stat().st_mode) == 0o644


def test_save_replaces_an_existing_code(tmp_path: Path) -> None:
    save_qr("iotdisco:KEY=old", tmp_path)
    old_inode = (tmp_path / "claim.png").stat().st_ino
    png, _ = save_qr("iotdisco:KEY=new", tmp_path)
    assert decode_qr_image(png) == "iotdisco:KEY=new"
    assert png.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize("stem", ["", ".", "..", "a/b", "../claim"])
def test_save_refuses_stems_that_are_not_file_names(tmp_path: Path, stem: str) -> None:
    with pytest.raises(QrError, match="plain file name"):
        save_qr(CLAIM, tmp_path, stem)


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(QrError, match="cannot write"):
        save_qr(CLAIM, tmp_path / "absent")
    assert list(tmp_path.iterdir()) == []


def test_non_latin_text_round_trips(tmp_path: Path) -> None:
    text = "iotdisco:ROOM=Kök;NAME=Термометр;KEY=k"
    png, _ = save_qr(text, tmp_path)
    assert decode_qr_image(png) == text


# -- decoding -------------------------------------------------------------------------------------


def test_photo_like_image_decodes(tmp_path: Path) -> None:
    png, _ = save_qr(CLAIM, tmp_path)
    with Image.open(png) as image:
        photo = image.convert("RGB")
    photo = photo.rotate(7, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    photo = photo.resize((photo.width * 3 // 5, photo.height * 3 // 5), Image.Resampling.LANCZOS)
    photo = photo.filter(ImageFilter.GaussianBlur(0.8))
    # Grey paper, darker ink, in the middle of a larger frame.
    frame = Image.new("RGB", (photo.width + 200, photo.height + 120), (200, 195, 185))
    frame.paste(photo.point(lambda value: 40 + value * 160 // 255), (130, 50))
    jpeg = tmp_path / "photo.jpg"
    frame.save(jpeg, quality=70)
    assert decode_qr_image(jpeg) == CLAIM


def test_transparent_png_decodes(tmp_path: Path) -> None:
    png, _ = save_qr(CLAIM, tmp_path)
    with Image.open(png) as image:
        gray = image.convert("L")
    # Dark modules opaque black, everything else fully transparent (black underneath).
    clear = Image.new("RGBA", gray.size, (0, 0, 0, 0))
    clear.putalpha(gray.point(lambda value: 255 - value))
    path = tmp_path / "clear.png"
    clear.save(path)
    assert decode_qr_image(path) == CLAIM


def test_blank_image_has_no_code(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 300), 255).save(blank)
    with pytest.raises(QrError, match="no readable QR code"):
        decode_qr_image(blank)


def test_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "claim.png"
    text.write_text(CLAIM)
    with pytest.raises(QrError, match="not an image"):
        decode_qr_image(text)


def test_truncated_image(tmp_path: Path) -> None:
    png, _ = save_qr(CLAIM, tmp_path)
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.read_bytes()[:200])
    with pytest.raises(QrError, match="cannot"):
        decode_qr_image(cut)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QrError, match="cannot read") as caught:
        decode_qr_image(tmp_path / "nowhere.png")
    assert isinstance(caught.value, NcapError)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(QrError):
        decode_qr_image(tmp_path)
