"""Read an SDR still (PNG or JPEG) as one H x W x 3 uint8 sRGB frame."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

from service.colour.description import ColourDescription
from service.colour.tags import HDR_TRANSFERS, Primaries, Transfer
from service.errors import AlreadyHDRError, CorruptStreamError, InputError, UnsupportedFormatError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SDR_TRANSFERS = {
    t.value for t in Transfer if t not in HDR_TRANSFERS and t not in (Transfer.UNSPECIFIED, Transfer.LINEAR)
}
_KNOWN_PRIMARIES = {p.value for p in Primaries if p is not Primaries.UNSPECIFIED}

MAX_PIXELS = 8192 * 8192
"""Refuse larger images before decoding them (Pillow's own bomb check is only a warning below 2x this)."""

FORMATS = ("PNG", "JPEG")
"""The still formats ``POST /v1/images`` documents; Pillow's other parsers are never run on uploads."""


@dataclass(frozen=True)
class SDRImage:
    """A decoded still: non-linear R'G'B' code values, how to interpret them, and what was dropped."""

    rgb: npt.NDArray[np.uint8]
    colour: ColourDescription
    warnings: tuple[str, ...]


def read_sdr_image(path: Path, *, max_pixels: int = MAX_PIXELS, name: str | None = None) -> SDRImage:
    """Decode an SDR image to 8-bit RGB: alpha dropped, 16-bit down-converted, greyscale expanded.

    Stills are sRGB unless tagged otherwise; an embedded ICC profile is not interpreted (noted in
    ``warnings``) because the operators only take H.273-style tags. Messages call the image ``name``
    (default: the file's name): an upload is stored under a generated name that means nothing to its sender.

    Raises
    ------
    InputError
        Missing, empty or unreadable file.
    CorruptStreamError
        Not an image, or truncated.
    UnsupportedFormatError
        Too large, or a mode we cannot convert.
    """
    path = Path(path)
    shown = name or path.name
    if not path.is_file():
        raise InputError(f"input image '{shown}' does not exist")
    if path.stat().st_size == 0:
        raise CorruptStreamError(f"input image '{shown}' is empty (0 bytes)")
    colour = _png_cicp_colour(path, shown) or ColourDescription.still()
    warnings: list[str] = []
    try:
        with Image.open(path, formats=FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UnsupportedFormatError(
                    f"input image '{shown}' is {width}x{height}; the limit is {max_pixels} pixels"
                )
            image.load()
            rgb = _to_rgb8(image, shown, warnings)
            icc = image.info.get("icc_profile")
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        # Image.open refuses headers over 2 x Image.MAX_IMAGE_PIXELS before our check above can run.
        raise UnsupportedFormatError(
            f"input image '{shown}' is {_declared_size(path)}; the limit is {max_pixels} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise CorruptStreamError(f"input '{shown}' is not an image (PNG or JPEG)") from exc
    except Exception as exc:
        # Hostile files make Pillow raise far more than OSError (struct.error, EOFError, zlib.error...);
        # each is the upload's fault, not ours, so none of them may become a 500.
        detail = str(exc) or type(exc).__name__
        raise CorruptStreamError(f"input image '{shown}' is truncated or corrupt ({detail})") from exc
    if icc and b"sRGB" not in icc[:512]:
        warnings.append(f"'{shown}' has an ICC profile that is not sRGB; treated as sRGB")
    return SDRImage(rgb, colour, tuple(warnings))


def _declared_size(path: Path) -> str:
    """``WxH`` as the file's header declares it, read without Image.open's decompression bomb check."""
    for plugin in (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile):
        try:
            with plugin(path) as image:
                return f"{image.size[0]}x{image.size[1]}"
        except Exception:  # not this format (or a broken header): try the next one
            continue
    return "larger than Pillow's decompression bomb limit"


def _png_cicp_colour(path: Path, shown: str) -> ColourDescription | None:
    """Colour description from a PNG's cICP chunk (which Pillow ignores); None without one.

    Transfer and primaries codes we do not know fall back to sRGB / BT.709, the still-image defaults.

    Raises
    ------
    AlreadyHDRError
        For a PQ or HLG PNG, such as this service's own output.
    """
    with path.open("rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        while header := f.read(8):
            if len(header) < 8:
                return None
            size, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind in (b"IDAT", b"IEND"):
                return None
            data = f.read(size)
            f.seek(4, 1)  # CRC
            if kind == b"cICP" and len(data) == 4:
                if data[1] in {t.value for t in HDR_TRANSFERS}:
                    raise AlreadyHDRError(
                        f"input image '{shown}' is tagged {Transfer(data[1]).name} (HDR already); "
                        "itmstream converts SDR only"
                    )
                transfer = Transfer(data[1]) if data[1] in _SDR_TRANSFERS else Transfer.IEC61966_2_1
                primaries = Primaries(data[0]) if data[0] in _KNOWN_PRIMARIES else Primaries.BT709
                return ColourDescription(transfer, primaries)
    return None


def _to_rgb8(image: Image.Image, name: str, warnings: list[str]) -> npt.NDArray[np.uint8]:
    """Any Pillow mode -> H x W x 3 uint8."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) greyscale: keep the top 8 bits, replicate to RGB.
        grey = np.asarray(image, dtype=np.uint32)
        scale = 257 if grey.max(initial=0) > 255 or mode != "I" else 1
        grey8 = np.clip(np.rint(grey / scale), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey8[..., None], 3, axis=2))
    if mode in ("F",):
        raise UnsupportedFormatError(f"input image '{name}' is floating point (HDR already?); expected SDR")
    if "A" in mode or (mode == "P" and "transparency" in image.info):
        warnings.append(f"'{name}': alpha channel dropped")
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
