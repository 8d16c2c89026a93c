"""What about a photo makes its count say little: judged once here and carried in every answer
(the HTTP API, the app, the batch CLI's CSV and drawings), so that no client has to judge it again.

Each warning is {"code", "title", "detail"}: the code for programs, the title and detail for people.
Each threshold was chosen on ACNE04's train photos and copies of them made grey, dark or small
(bench/photo_conditions.py; docs/FIGURES.md, "Photo conditions").
"""
from __future__ import annotations

from trouble.skin import MIN_SKIN_FRACTION, brightness, skin_fraction, working_copy

# Below this share of skin, with no face crop made, the face is likely small in the photo: none of
# ACNE04's 283 valid close-ups is under it (99 in 100 are over 36% skin; the lowest, 19%).
SMALL_FACE_SKIN = 0.15
# trouble.skin.brightness under this: a dark photo. The darkest 26 of the 991 train photos are under
# it; of their copies at 70% of the light 24%, at 50% 86%, at 30% all. On 24 of them, those copies
# lost 28%, 52% and 87% of the count.
DARK_BRIGHTNESS = 90
# The part of the photo the model is run on (the whole, or the face's crop) with a shorter side
# under this many pixels: a small photo, whose lesions are a few pixels wide. ACNE04's 640 px train
# photos made 200 px lost 0-10% of their count, at 128 px 7-17%, at 96 px 18-29% (the lower
# figure on 24 photos, the higher on the 12 with the most lesions).
SMALL_PHOTO_SIDE = 160
# Codes of the warnings that say the count is likely too low (the others: it may say nothing).
COUNT_TOO_LOW = ("no_colour", "dark", "small_photo", "small_face")


def judge_photo(rgb, framing: str, face_crop, photo_size: tuple[int, int]) -> tuple[float | None, list[dict]]:
    """(trouble.skin.skin_fraction, photo_warnings) of a photo (an RGB array, whole, at any size) whose
    answer ran with `framing`, on `face_crop` (x1, y1, x2, y2 in the photo's own pixels) or, None, on
    the whole photo of `photo_size` (width, height): the inference core's and, for an archive older
    than warnings, the app's."""
    small = working_copy(rgb)  # measured once, at the size the measures work at
    skin = skin_fraction(small)
    x1, y1, x2, y2 = face_crop or (0, 0, *photo_size)
    return skin, photo_warnings(skin, framing, face_cropped=face_crop is not None, brightness=brightness(small),
                                analysed_size=(round(x2 - x1), round(y2 - y1)))


def photo_warnings(skin_fraction: float | None, framing: str, face_cropped: bool, *,
                   brightness: float | None = None, analysed_size: tuple[int, int] | None = None) -> list[dict]:
    """skin_fraction: trouble.skin.skin_fraction of the photo, None for a photo without colour;
    framing: the answer's face framing ("face": a face was looked for, "none": it was not);
    face_cropped: whether the model was run on a crop to the face (then the face is not small in
    what it saw); brightness: trouble.skin.brightness of the photo; analysed_size: (width, height)
    in the photo's own pixels of what the model was run on. Checks whose measure is None are not made."""
    warnings = []
    if brightness is not None and brightness < DARK_BRIGHTNESS:  # alone: colour and skin too dark to judge
        warnings.append({
            "code": "dark", "title": "A dark photo",
            "detail": "Lesions are hard to see in it, and the model finds fewer: this count is likely too low. "
                      "Take the photo in brighter, even light."})
    elif skin_fraction is None:  # measured: docs/FIGURES.md, "Photos without colour"
        warnings.append({
            "code": "no_colour", "title": "A photo with little or no colour (grey-scale, sepia, a filter)",
            "detail": "The model learnt from colour photos and finds far fewer lesions without colour: this count "
                      "is likely too low. Send the photo as the camera took it, without a filter."})
    elif skin_fraction < MIN_SKIN_FRACTION:
        warnings.append({
            "code": "little_skin", "title": f"Little of this photo looks like skin ({skin_fraction:.0%})",
            "detail": "If there is no face in it, this count and grade say nothing; if there is one, it is too "
                      "small in the photo for the model to see its lesions: crop the photo to the face."})
    elif skin_fraction < SMALL_FACE_SKIN and not face_cropped:
        looked = framing == "face"  # with face framing off, no face was looked for
        warnings.append({
            "code": "small_face",
            "title": f"The face looks small in this photo ({skin_fraction:.0%} of it is skin), and "
                     + ("no face was found to crop to" if looked else "face framing was off"),
            "detail": "The model learnt from close-ups: in a wide photo it sees the lesions too small, and this count "
                      "is likely too low. Crop the photo to the face" + ("" if looked else ", turn face framing on")
                      + ", or take a closer one."})
    if analysed_size is not None and min(analysed_size) < SMALL_PHOTO_SIDE:
        width, height = analysed_size
        what = "The face's part of this photo is" if face_cropped else "This photo is"
        warnings.append({
            "code": "small_photo", "title": f"{what} only {width}x{height} px",
            "detail": "Its lesions are a few pixels wide, and the model misses many: this count is likely too low. "
                      "Send the photo at full size (a messaging app often sends a shrunk copy)."})
    return warnings
