"""What about a photo makes its count say little: judged once here and carried in every answer
(the HTTP API, the app, the batch CLI's CSV and drawings), so that no client has to judge it again.

Each warning is {"code", "title", "detail"}: the code for programs, the title and detail for people.
"""
from __future__ import annotations

from trouble.skin import MIN_SKIN_FRACTION

# Below this share of skin, with no face crop made, the face is likely small in the photo: none of
# ACNE04's 283 valid close-ups is under it (99 in 100 are over 36% skin; the lowest, 19%).
SMALL_FACE_SKIN = 0.15


def photo_warnings(skin_fraction: float | None, framing: str, face_cropped: bool) -> list[dict]:
    """skin_fraction: trouble.skin.skin_fraction of the photo, None for a photo without colour;
    framing: the answer's face framing ("face": a face was looked for, "none": it was not);
    face_cropped: whether the model was run on a crop to the face (then the face is not small in
    what it saw)."""
    if skin_fraction is None:  # measured: docs/FIGURES.md, "Photos without colour"
        return [{"code": "no_colour", "title": "A photo without colour",
                 "detail": "The model learnt from colour photos and finds far fewer lesions without colour: "
                           "this count is likely too low."}]
    if skin_fraction < MIN_SKIN_FRACTION:
        return [{"code": "little_skin", "title": f"Little of this photo looks like skin ({skin_fraction:.0%})",
                 "detail": "If there is no face in it, this count and grade say nothing; if there is one, it is "
                           "too small in the photo for the model to see its lesions: crop the photo to the face."}]
    if skin_fraction < SMALL_FACE_SKIN and not face_cropped:
        looked = framing == "face"  # with face framing off, no face was looked for
        return [{"code": "small_face",
                 "title": f"The face looks small in this photo ({skin_fraction:.0%} of it is skin), and "
                          + ("no face was found to crop to" if looked else "face framing was off"),
                 "detail": "The model learnt from close-ups: in a wide photo it sees the lesions too small, and "
                           "this count is likely too low. Crop the photo to the face"
                           + ("" if looked else ", turn face framing on") + ", or take a closer one."}]
    return []
