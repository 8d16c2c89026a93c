"""Decode an uploaded photo into an RGB array the model can take, or say clearly why not.

Everything a phone or a scanner may send is handled here once: EXIF orientation, grayscale,
palette, RGBA, CMYK and 16-bit images, HEIC (what iPhones save by default), huge photos (decoded
at reduced size, then capped to a working resolution) and hostile input (decompression bombs,
truncated files, SVG or PDF bytes).
"""
from __future__ import annotations

import io
import math
import os
import re
import struct
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, PngImagePlugin, UnidentifiedImageError

try:  # PIL reads HEIC only through the pillow-heif plugin (libheif); it applies HEIC's rotation
    from pillow_heif import register_heif_opener
except ImportError:  # a server without it still answers, and says what is missing
    HEIC_READABLE = False
else:
    register_heif_opener()
    HEIC_READABLE = True

ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "HEIF"}  # MPO: the JPEG variant many phones write
ACCEPTED = "a JPEG, PNG, WebP or HEIC photo"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".heic", ".heif")  # their file names
# The ISO media "brands" of HEIC/HEIF files, at bytes 8-12 after "ftyp".
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
MIN_SIDE = 16
# Long side over short side. A panorama is about 4:1; beyond 20:1 the model's input (720 px on the
# long side) would be under 36 px high, and far beyond, under one pixel.
MAX_ASPECT = 20
# The model never needs more than this many pixels on the long side: larger photos are
# downscaled before inference and boxes are mapped back to the original pixels.
DEFAULT_MAX_SIDE = 4096
# Anything above this is refused before decoding (a 50 MP photo is fine; a 20000x20000 PNG
# of a few KB is a decompression bomb).
DEFAULT_MAX_PIXELS = 120_000_000
# What libjpeg fills a JPEG's rows with where its data ends: 128 (colour and grey), 127 (CMYK as PIL reads it).
JPEG_FILL_VALUES = (127, 128)
# libjpeg's warnings (jerror.h) after which the pixels are not the photo's: its data is cut, or bytes
# in it are garbled. Its other warnings (an unknown JFIF version, a bad ICC chunk) leave the photo whole.
JPEG_DAMAGE_WARNINGS = ("premature end of", "bad huffman code", "instead of rst", "extraneous bytes before marker",
                        "inconsistent progression", "bad arithmetic code")


class BadInput(ValueError):
    """A request we refuse: not a usable photo, or a parameter out of range.

    `code` is machine-readable, str(error) is for people, `http_status` is what the server answers.
    """

    def __init__(self, code: str, message: str, http_status: int = 400):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def unreadable_image(error: Exception) -> BadInput:
    """Why an image file could not be decoded: PIL refuses a PNG whose compressed text or colour
    profile unpacks to more than PngImagePlugin.MAX_TEXT_CHUNK, else the data is broken."""
    if "MAX_TEXT_CHUNK" in str(error):
        return BadInput("too_much_metadata", f"The PNG carries more metadata (text or a colour profile) than "
                                             f"accepted (over {PngImagePlugin.MAX_TEXT_CHUNK / 2**20:g} MB "
                                             f"unpacked): save it again without metadata, or as a JPEG.", 413)
    reason = " ".join(str(error).split())  # libheif's messages end in a line break
    return BadInput("corrupt_image", f"The image data is truncated or corrupt ({reason}).")


def photos_in_subfolders(folder, suffixes=PHOTO_SUFFIXES, skip=()) -> dict:
    """{subfolder name: how many files with these suffixes it holds, at any depth}, for each
    subfolder (not hidden, not in `skip`) that holds any, or that cannot be read (None: whether it
    holds photos is unknown): the photos a command reading one folder (the batch CLI, a VOC or YOLO
    import) would otherwise leave out in silence."""
    found = {}
    for sub in sorted(Path(folder).iterdir()):
        if not sub.is_dir() or sub.name.startswith(".") or sub.name in skip:
            continue
        if sub.is_symlink() and Path(folder).resolve().is_relative_to(sub.resolve()):
            continue  # a link to the folder itself or above it: its photos are not others
        unreadable = []  # os.walk passes over a folder it may not list, unless told
        count = sum(1 for _, _, names in os.walk(sub, onerror=unreadable.append)
                    for name in names if Path(name).suffix.lower() in suffixes)
        if unreadable or count:
            found[sub.name] = None if unreadable else count
    return found


@dataclass
class DecodedImage:
    rgb: np.ndarray          # H x W x 3 uint8, the working image given to the model
    original_width: int      # after EXIF orientation, before any downscaling
    original_height: int
    format: str
    decode_ms: float = 0.0   # time spent decoding, reported in the response
    taken_at: str | None = None  # when the camera took it (EXIF), as taken_at() gives it

    @property
    def scale_to_original(self) -> float:
        """Multiply working-image coordinates by this to get original-image pixels."""
        return self.original_width / self.rgb.shape[1]


def is_heic(data: bytes) -> bool:
    """Whether the bytes start like a HEIC/HEIF file."""
    head = bytes(data[:12])  # TorchServe hands over a bytearray, which a set lookup refuses
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def looks_like_image(data: bytes) -> bool:
    """Whether the bytes start like a JPEG, PNG, WebP or HEIC file (however broken the rest is)."""
    return data[:8].startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or data[8:12] == b"WEBP" or is_heic(data)


def decode_image(data: bytes, max_side: int = DEFAULT_MAX_SIDE,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Bytes of a JPEG, PNG, WebP or HEIC photo → DecodedImage; raises BadInput with a clear message."""
    started = time.perf_counter()
    if not data:
        raise BadInput("empty_body", f"The request has no image: send the bytes of {ACCEPTED}.")
    head = data[:1024].removeprefix(b"\xef\xbb\xbf").lstrip().lower()  # a UTF-8 byte-order mark first
    if head.startswith(b"%pdf"):
        raise BadInput("unsupported_format", f"This is a PDF document, not a photo: send {ACCEPTED}.",
                         415)
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        raise BadInput("unsupported_format", f"SVG vector images are not accepted: send {ACCEPTED}.",
                         415)
    try:
        with warnings.catch_warnings():
            # max_pixels below is the limit. PIL's own warning threshold (89 MP) is global state that
            # SAHI switches off, so heeding it would refuse a photo before SAHI first runs, not after.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        if isinstance(error, Image.DecompressionBombError):  # PIL's limit: twice its MAX_IMAGE_PIXELS
            pil_limit = 2 * Image.MAX_IMAGE_PIXELS
            limit = (f"the limit is {max_pixels / 1e6:.0f} MP" if max_pixels <= pil_limit
                     else "more than the image decoder accepts")  # an archive may allow more than PIL does
            raise BadInput("too_many_pixels", f"The image has more than {pil_limit / 1e6:.0f} megapixels; "
                                              f"{limit}. Resize it and send it again.", 413) from error
        if not HEIC_READABLE and is_heic(data):
            raise BadInput("unsupported_format", "This is a HEIC photo and this server cannot read HEIC "
                                                 "(the pillow-heif package is not installed): send a JPEG, "
                                                 "PNG or WebP.", 415) from error
        if looks_like_image(data):
            raise unreadable_image(error) from error
        raise BadInput("not_an_image", f"The data is not a readable image: send {ACCEPTED}.", 415) from error
    image_format = image.format  # the turned copy below has none
    if image_format not in ACCEPTED_FORMATS:
        raise BadInput("unsupported_format",
                         f"{image_format} images are not accepted: send {ACCEPTED}.", 415)
    # As a GIF is refused: its first frame alone would be analysed without a word. (A camera's MPO
    # JPEG and a HEIC hold more than one image too, the photo first: those are photos.)
    if image_format in ("PNG", "WEBP") and getattr(image, "is_animated", False):
        raise BadInput("unsupported_format", f"This is an animated {image_format} ({image.n_frames} frames), not "
                                             f"a photo: send one frame as {ACCEPTED}.", 415)
    width, height = image.size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise BadInput("too_small", f"The image is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} "
                                      f"is needed to find anything.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise BadInput("extreme_aspect_ratio", f"The image is {width}x{height} pixels, a strip; at most "
                                               f"{MAX_ASPECT}:1 can be analysed (resized for the model, a "
                                               f"longer strip would be less than a pixel high). Crop it.")
    if width * height > max_pixels:
        raise BadInput("too_many_pixels",
                         f"The image is {width}x{height} = {width * height / 1e6:.0f} megapixels; the limit is "
                         f"{max_pixels / 1e6:.0f} MP. Resize it and send it again.", 413)

    try:
        exif = image.getexif()  # a PNG's EXIF may come after its pixels: a full read
        orientation = exif.get(0x0112, 1)
        # Decode large JPEGs at 1/2, 1/4 or 1/8 scale directly: a 50 MP photo never sits in memory in full.
        data, image = loaded(data, image, (max_side, max_side))
        missing, damage = jpeg_defects(data, image)
        # A huge PNG or WebP (a few hundred KB of one colour can hold 100 MP) is shrunk before the
        # conversions below, which would otherwise make several full-size copies of it (of a
        # palette image, in RGBA).
        factor = max(image.size) // max_side  # still at least max_side after, then capped below
        if factor >= 2:
            if image.mode in ("RGB", "RGBA", "L", "LA"):
                image = image.reduce(factor)  # averages: as smooth as a resize
            else:  # 16-bit, palette, 1-bit, CMYK: reduce() refuses them
                image = image.resize((image.width // factor, image.height // factor), Image.Resampling.NEAREST)
        rgb = upright_rgb(image, orientation)
    except (OSError, ValueError, SyntaxError, struct.error) as error:
        raise unreadable_image(error) from error
    if missing:  # of the stored photo: as displayed (EXIF turned) not always at its bottom
        raise BadInput("corrupt_image", f"The JPEG's data ends early: {max(1, math.floor(missing * 100))}% of the "
                                        f"photo is missing (it decodes as flat grey). Send the whole file.")
    if damage:
        raise BadInput("corrupt_image", f"The JPEG's data is damaged (the decoder reports: {damage}): part of the "
                                        f"photo would be analysed as noise or flat grey. Send the original file again.")
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: width and height swap
        width, height = height, width
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return DecodedImage(np.asarray(rgb, dtype=np.uint8), width, height, image_format,
                        round((time.perf_counter() - started) * 1000.0, 1), taken_at(exif))


def taken_at(exif: Image.Exif) -> str | None:
    """When the camera took the photo, from EXIF DateTimeOriginal (with OffsetTimeOriginal where the
    camera wrote one), as ISO 8601: "2026-10-01T14:22:05+02:00"; None when it is missing or malformed.
    Follow-up photos are compared by it: a file's own date changes when it is copied."""
    try:
        details = exif.get_ifd(0x8769)  # the Exif sub-IFD
        taken = datetime.strptime(_exif_text(details, 0x9003), "%Y:%m:%d %H:%M:%S")
    except (ValueError, TypeError, KeyError, OSError, struct.error):
        return None  # none, or a malformed one: the analysis does not depend on it
    try:
        taken = taken.replace(tzinfo=datetime.strptime(_exif_text(details, 0x9011), "%z").tzinfo)
    except ValueError:
        pass  # no offset, or a malformed one: the camera's clock time as written
    return taken.isoformat()


def _exif_text(ifd: dict, tag: int) -> str:
    """An EXIF text tag: ASCII as EXIF says, or bytes where a camera stored it as UNDEFINED."""
    value = ifd.get(tag, "")
    return (value.decode("ascii", "ignore") if isinstance(value, bytes) else str(value)).strip("\x00 ")


def loaded(data: bytes, image: Image.Image, draft_size: tuple | None = None) -> tuple[bytes, Image.Image]:
    """(data, image) with its pixels loaded; a JPEG at the smallest scale of at least draft_size.

    A baseline JPEG whose data stops before its end marker is decoded again with the marker added:
    a file that lacks only the marker (as some cameras and apps write them; viewers show them)
    then decodes whole, and one whose data stops early decodes with its missing rows flat grey,
    which jpeg_rows_missing then measures. A progressive one stays refused: what its missing scans
    lack cannot be measured."""
    jpeg = image.format in ("JPEG", "MPO")
    if jpeg and draft_size:
        image.draft("RGB", draft_size)
    try:
        image.load()
        return data, image
    except OSError:
        progressive = image.info.get("progressive") or image.info.get("progression")
        # Data ending in zeros is a copy cut short and padded (a crash, an interrupted download), not
        # a file missing only its marker: the zeros would decode as garbage, not as measurable grey.
        if not jpeg or progressive or data.endswith(b"\x00") or data.endswith(b"\xff\xd9"):
            raise
    data = data + b"\xff\xd9"
    with warnings.catch_warnings():  # its size was checked where it was first opened
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    if draft_size:
        image.draft("RGB", draft_size)
    image.load()
    return data, image


def jpeg_defects(data: bytes, image: Image.Image) -> tuple[float, str | None]:
    """(the share of its rows a JPEG's data does not reach, what libjpeg says damages it) of `data`
    loaded as `image` (loaded()); (0.0, None) for a whole JPEG and for any other format. The decoder's
    word is asked only where no rows are missing: those are measured, a better thing to tell."""
    if image.format not in ("JPEG", "MPO"):
        return 0.0, None
    missing = jpeg_rows_missing(data, image)
    return missing, None if missing else jpeg_damage(data)


def jpeg_rows_missing(data: bytes, image: Image.Image) -> float:
    """The share of a decoded JPEG's rows that its data did not reach (0.0 for a whole file).

    A JPEG whose data stops early but which still ends with an end marker (a damaged or cut file
    mended by a tool; a header claiming a larger size than its data) decodes without an error in
    PIL: libjpeg fills the rows it has no data for with flat grey and only warns, and PIL drops the
    warning. A photo may end in a grey band of its own (one pasted on a grey canvas), so a band is
    confirmed by decoding the data again without its end marker: there libjpeg stops where the data
    stops and leaves the rest black, so a band it never reaches has no data behind it. Baseline
    JPEGs only: a progressive one gives no rows until its end. image: `data` decoded (at any draft
    scale), in its stored orientation."""
    if image.info.get("progressive") or image.info.get("progression"):
        return 0.0
    last_row = np.asarray(image.crop((0, image.height - 1, image.width, image.height)))
    value = int(last_row.flat[0])
    if value not in JPEG_FILL_VALUES or not np.all(last_row == value):
        return 0.0
    band = trailing_rows(image, value)
    try:  # PIL's own incremental decoding (as ImageFile.Parser does it), of a copy
        with warnings.catch_warnings():  # decode_image has checked its size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            copy = Image.open(io.BytesIO(data))
        stored_height = copy.height
        copy.draft(image.mode, (copy.width // 8, copy.height // 8))  # 1/8 scale: every byte read, few pixels
        copy.load_prepare()
        tile = copy.tile[0]
        decoder = Image._getdecoder(copy.mode, tile.codec_name, tile.args, copy.decoderconfig)
        decoder.setimage(copy.im, tile.extents)
        decoder.decode(bytes(data[tile.offset:]).removesuffix(b"\xff\xd9"))
        decoder.cleanup()
        stopped = Image.Image()._new(copy.im)
    except Exception:  # noqa: BLE001  a check that fails refuses nothing
        return 0.0
    unreached = trailing_rows(stopped, 0)
    if unreached == stopped.height:  # no row at all: scans this check cannot follow
        return 0.0
    # Compared in the stored photo's rows. Without its end marker a whole file also stops short, by
    # a row of blocks (8 or 16 px) or so.
    band_rows, unreached_rows = (band * stored_height / image.height, unreached * stored_height / stopped.height)
    return band / image.height if unreached_rows >= band_rows and unreached_rows > 32 else 0.0


def jpeg_damage(data: bytes) -> str | None:
    """What libjpeg says is wrong with a JPEG's data, if it damages the photo; None for a whole photo.

    PIL drops libjpeg's warnings and decodes garbled or cut data as noise or flat grey, without an
    error (64 garbled bytes changed a face photo's pixels by 50 levels on average). simplejpeg's
    strict mode (libjpeg-turbo) raises them instead. Decoded at 1/8 scale: every byte is still read
    (9 ms for a 12 MP photo). Anything else simplejpeg refuses (a CMYK JPEG, which PIL reads) is
    left to PIL's decoding: this check refuses only what it can name. Garbled bytes that happen to
    decode as valid codes give no warning at all (4 of 9 tries, 64 bytes garbled in three ACNE04
    photos): no check here sees them."""
    data = bytes(data)
    try:
        simplejpeg.decode_jpeg(data, min_height=1, min_width=1, fastdct=True, strict=True)
    except ValueError as warning:
        message = " ".join(str(warning).split())
        said = message.lower()
        if not any(damage in said for damage in JPEG_DAMAGE_WARNINGS):
            return None
        padding = re.search(r"(\d+) extraneous bytes before marker 0xd9", said)
        # Some cameras pad the end marker (one byte, or a run of one value): the photo is whole. Other
        # bytes left there are data the decoder did not need, thrown off by garbled codes before them.
        if padding and end_padding_is_one_value(data, int(padding[1])):
            return None
        return message
    return None


def end_padding_is_one_value(data: bytes, count: int) -> bool:
    """Whether the `count` bytes before the end marker of a JPEG's main image are all one value.

    The main image's end marker is the first after its first scan starts; the segments before it are
    walked by their lengths, as an EXIF thumbnail inside one holds markers of its own."""
    at = 2  # after the start marker
    while at + 4 <= len(data) and data[at] == 0xFF:
        if data[at + 1] == 0xFF:  # fill byte before a marker
            at += 1
        elif data[at + 1] == 0xDA:  # start of scan: entropy-coded data never holds FF D9
            end = data.find(b"\xff\xd9", at)
            before = data[:end].rstrip(b"\xff")[-count:]  # fill bytes (FF) before the marker are not counted
            return end > 0 and len(set(before)) == 1
        else:
            at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return False


def trailing_rows(image: Image.Image, value: int, strip: int = 64) -> int:
    """How many rows at the bottom of an image have every pixel (every channel) at `value`: read in
    strips from the bottom, up to the first other row."""
    rows = 0
    while rows < image.height:
        top = max(0, image.height - rows - strip)
        pixels = np.asarray(image.crop((0, top, image.width, image.height - rows)))
        same = np.all(pixels.reshape(pixels.shape[0], -1) == value, axis=1)
        if not same.all():
            return rows + int(np.argmin(same[::-1]))  # the first row from the bottom that differs
        rows += len(same)
    return rows


# EXIF orientation → the turn that shows the photo as displayed.
TRANSPOSE_FOR_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                             6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                             8: Image.Transpose.ROTATE_90}


def upright_rgb(image: Image.Image, orientation: int | None = None) -> Image.Image:
    """A PIL image as the model and the drawings see it: EXIF orientation applied, 8-bit RGB.

    Turned here from the orientation value (which PIL also reads from XMP; `orientation` when it
    was read already) rather than with ImageOps.exif_transpose, which also rewrites the EXIF block
    and fails (struct.error) on a malformed tag in a photo that is otherwise fine."""
    if orientation is None:
        orientation = image.getexif().get(0x0112, 1)
    turn = TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return to_rgb(image.transpose(turn) if turn is not None else image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB; transparent pixels become white."""
    if image.mode.startswith("I;16"):  # the high byte: no float copy of a large 16-bit image
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    elif image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")
