"""What about a photo makes its count say little: judged once here and carried in every answer
(the HTTP API, the app, the batch CLI's CSV and drawings), so that no client has to judge it again.

Each warning is {"code", "title", "detail"}: the code for programs, the title and detail for people.
Each threshold was chosen on ACNE04's train photos and copies of them made grey, dark or small
(bench/photo_conditions.py; docs/FIGURES.md, "Photo conditions").
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from trouble.skin import MIN_SKIN_FRACTION, brightness, skin_fraction, working_copy

# Below this share of skin, with no face crop made, the face is likely small in the photo: none of
# ACNE04's 283 valid close-ups is under it (99 in 100 are over 36% skin; the lowest, 19%).
SMALL_FACE_SKIN = 0.15
# trouble.skin.brightness under this: a dark photo. The darkest 26 of the 991 train photos are under
# it; of their copies at 70% of the light 24%, at 50% 86%, at 30% all. On 24 of them, those copies
# lost 28%, 52% and 87% of the count.
DARK_BRIGHTNESS = 90
# A dark photo is brightened for the model (the archive's brighten_dark, on by default) by the gain
# that brings its brightness to this, at most MAX_GAIN. On the darkest 26 train photos as they are
# (all under DARK_BRIGHTNESS), the count error per photo fell from 7.8 to 6.7 (its bias from -2.0 to
# +2.0), grade accuracy rose from 0.58 to 0.65, mAP50 from 0.235 to 0.241; on copies of 24 train
# photos at 30% of the light the lesions found rose from 27 to 177 of 306 (215 as they are). The
# target was chosen on those 26 among 90, 110, 130 and 150 (docs/FIGURES.md, "Photo conditions").
# Only photos under DARK_BRIGHTNESS change: none of the valid ones, whose figures stand.
BRIGHTEN_TO = 110
MAX_GAIN = 4.0
# The part of the photo the model is run on (the whole, or the face's crop) with a shorter side
# under this many pixels: a small photo, whose lesions are a few pixels wide. ACNE04's 640 px train
# photos made 200 px lost 0-10% of their count, at 128 px 7-17%, at 96 px 18-29% (the lower
# figure on 24 photos, the higher on the 12 with the most lesions).
SMALL_PHOTO_SIDE = 160
# Codes of the warnings that say the count is likely too low (the others: it may say nothing). Not
# "dark" where the photo was brightened for the model: its count is then less sure either way.
COUNT_TOO_LOW = ("no_colour", "dark", "small_photo", "small_face")


class PhotoJudgement(NamedTuple):
    skin_fraction: float | None  # trouble.skin.skin_fraction; None for a photo without colour
    brightness: float            # trouble.skin.brightness
    gain: float                  # what the model's input is brightened by (1: not at all)
    warnings: list               # photo_warnings


def judge_photo(rgb, framing: str, face_crop, photo_size: tuple[int, int],
                brighten_dark: bool = False) -> PhotoJudgement:
    """What about a photo (an RGB array, whole, at any size) makes its count say little, and how it is
    brightened for the model (with `brighten_dark`, when it is dark): the inference core's and, for an
    archive older than warnings, the app's. Its answer runs with `framing`, on `face_crop` (x1, y1, x2, y2
    in the photo's own pixels) or, None, on the whole photo of `photo_size` (width, height). Dark or not
    is judged of what the model is run on: a well-lit face cropped from a dim room is not dark. So is
    its skin: a face cropped from a wide photo had been told "little skin: crop the photo to the face"."""
    x1, y1, x2, y2 = face_crop or (0, 0, *photo_size)
    to_rgb = rgb.shape[1] / photo_size[0]  # photo pixels → rgb's
    seen = rgb[round(y1 * to_rgb):round(y2 * to_rgb), round(x1 * to_rgb):round(x2 * to_rgb)] if face_crop else rgb
    light = brightness(seen)
    gain = brightening_gain(light) if brighten_dark else 1.0
    skin = skin_fraction(brightened(working_copy(seen), gain))  # of what the model is given, as it is given it
    return PhotoJudgement(skin, light, gain, photo_warnings(
        skin, framing, face_cropped=face_crop is not None, brightness=light,
        analysed_size=(round(x2 - x1), round(y2 - y1)), brightened_by=gain))


def brightening_gain(light: float) -> float:
    """What a photo of brightness `light` (trouble.skin.brightness) is brightened by for the model:
    1 unless it is dark."""
    if light >= DARK_BRIGHTNESS:
        return 1.0
    return round(min(BRIGHTEN_TO / max(light, 1.0), MAX_GAIN), 3)


def brightened(rgb: np.ndarray, gain: float) -> np.ndarray:
    """rgb with every channel times `gain`, saturating at 255: light as a longer exposure would have
    caught it. A lookup table, with no float copy of a photo that may be 4096 px."""
    if gain == 1:
        return rgb
    table = np.clip(np.arange(256) * gain, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(rgb), table)


def photo_warnings(skin_fraction: float | None, framing: str, face_cropped: bool, *,
                   brightness: float | None = None, analysed_size: tuple[int, int] | None = None,
                   brightened_by: float = 1.0) -> list[dict]:
    """skin_fraction: trouble.skin.skin_fraction of the photo, None for a photo without colour;
    framing: the answer's face framing ("face": a face was looked for, "none": it was not);
    face_cropped: whether the model was run on a crop to the face (then the face is not small in
    what it saw); brightness: trouble.skin.brightness of the photo; analysed_size: (width, height)
    in the photo's own pixels of what the model was run on; brightened_by: what the model's input was
    brightened by (brightening_gain), and skin_fraction measured on it so. Checks whose measure is
    None are not made."""
    warnings = []
    dark = brightness is not None and brightness < DARK_BRIGHTNESS
    if dark:
        if brightened_by > 1:  # the count may then be off either way (docs/FIGURES.md, "Photo conditions")
            warnings.append({
                "code": "dark", "title": f"A dark photo, brightened {brightened_by:.1f}x for the model",
                "detail": "Lesions are hard to see in a dark photo. Brightened, the model finds more of them, but "
                          "noise and shadows look like lesions too: this count is less sure than in a well-lit "
                          "photo. Take the photo in brighter, even light."})
        else:
            warnings.append({
                "code": "dark", "title": "A dark photo",
                "detail": "Lesions are hard to see in it, and the model finds fewer: this count is likely too low. "
                          "Take the photo in brighter, even light."})
    # In a dark photo colour and skin are too dark to judge, unless it was brightened (and they were
    # measured on it brightened).
    if not dark or brightened_by > 1:
        warnings += colour_and_skin_warnings(skin_fraction, framing, face_cropped)
    if analysed_size is not None and min(analysed_size) < SMALL_PHOTO_SIDE:
        width, height = analysed_size
        what = "The face's part of this photo is" if face_cropped else "This photo is"
        warnings.append({
            "code": "small_photo", "title": f"{what} only {width}x{height} px",
            "detail": "Its lesions are a few pixels wide, and the model misses many: this count is likely too low. "
                      "Send the photo at full size (a messaging app often sends a shrunk copy)."})
    return warnings


def colour_and_skin_warnings(skin_fraction: float | None, framing: str, face_cropped: bool) -> list[dict]:
    """The one warning, if any, of a photo's colour and skin (photo_warnings' arguments)."""
    if skin_fraction is None:  # measured: docs/FIGURES.md, "Photos without colour"
        return [{
            "code": "no_colour", "title": "A photo with little or no colour (grey-scale, sepia, a filter)",
            "detail": "The model learnt from colour photos and finds far fewer lesions without colour: this count "
                      "is likely too low. Send the photo as the camera took it, without a filter."}]
    if skin_fraction < MIN_SKIN_FRACTION:
        return [{
            "code": "little_skin", "title": f"Little of this photo looks like skin ({skin_fraction:.0%})",
            "detail": "If there is no face in it, this count and grade say nothing; if there is one, it is too "
                      "small in the photo for the model to see its lesions: crop the photo to the face. A strong "
                      "blue or green colour cast hides skin's colour too (4 of 24 close-ups with a cool cast got "
                      "this warning): then take the photo in daylight or white light."}]
    if skin_fraction < SMALL_FACE_SKIN and not face_cropped:
        looked = framing == "face"  # with face framing off, no face was looked for
        return [{
            "code": "small_face",
            "title": f"The face looks small in this photo ({skin_fraction:.0%} of it is skin), and "
                     + ("no face was found to crop to" if looked else "face framing was off"),
            "detail": "The model learnt from close-ups: in a wide photo it sees the lesions too small, and this count "
                      "is likely too low. Crop the photo to the face" + ("" if looked else ", turn face framing on")
                      + ", or take a closer one."}]
    return []
