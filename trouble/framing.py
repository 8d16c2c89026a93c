"""Face framing: crop a photo to the face when the face is small in it.

A model trained on face close-ups (ACNE04: the face fills a 640 px photo) finds almost nothing in
a wide photo in which the face is small: resized whole, its lesions shrink below what it can see
(docs/FIGURES.md, "Large photos"). Cropped to the face, the photo looks like what it was trained
on. The face is found with OpenCV's Haar cascades, frontal and profile (both ways), which ship
inside opencv-python: nothing to download, about 0.2 s a photo on a CPU (docs/FIGURES.md).

The cascades also "find" small faces in the skin of a close-up (on ACNE04's valid close-ups, one
in ten of the faces found is under 40% of the photo's side). Cropping to one of those would cut
most of the face away, so a crop is made only when most of the photo's skin (the skin-colour mask
of trouble/skin.py) lies inside it: true of a small face in a wide photo, false of a
patch of a close-up.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from trouble.skin import skin_mask

FRAMINGS = ("none", "face")
DETECT_SIDE = 640     # the face is looked for on a copy this size (long side)
MIN_FACE = 48         # px on that copy: smaller faces are not looked for
# The crop: a square around the face, this many times the face box's side (the cascades' box runs
# from the brows to the mouth). Of 1.1, 1.25 and 1.4, 1.1 scored best on valid photos set in the
# middle of a canvas 1.6 and 3 times their size: the face then fills the crop as in training.
CROP_MARGIN = 1.1
# Only when the crop is clearly smaller than the photo: a close-up stays whole. At 0.75, 8 of ACNE04's
# 283 valid close-ups were cropped (to 0.69-0.73 of their side, cutting off lesions); at 0.6, one.
CROP_BELOW = 0.6      # share of the photo's shorter side
SKIN_INSIDE = 0.6     # share of the photo's skin that must lie inside the crop
# Under this share of the photo looking like skin there is no skin colour to judge a crop by (a grey
# photo): no crop. A face the cascades can find (MIN_FACE) is at least about 0.4% of a photo.
MIN_SKIN_FOUND = 0.002


@lru_cache(maxsize=1)
def _cascades():
    import cv2

    return [cv2.CascadeClassifier(cv2.data.haarcascades + name)
            for name in ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml")]


def find_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest face in an RGB photo as (x1, y1, x2, y2) in its pixels, or None."""
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    if min(height, width) * scale < MIN_FACE:  # a strip: no face of MIN_FACE px fits on the copy
        return None
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    frontal, profile = _cascades()
    found = []
    for cascade, mirrored in ((frontal, False), (profile, False), (profile, True)):  # profiles face one way
        image = gray[:, ::-1] if mirrored else gray
        for x, y, w, h in cascade.detectMultiScale(np.ascontiguousarray(image), scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(MIN_FACE, MIN_FACE)):
            x = image.shape[1] - x - w if mirrored else x
            found.append((int(w) * int(h), (x, y, x + w, y + h)))
    if not found:
        return None
    box = max(found)[1]
    return tuple(round(v / scale) for v in box)


def face_crop(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The square (x1, y1, x2, y2) to crop the photo to, or None: no face found, or the face fills
    the photo already."""
    face = find_face(rgb)
    if face is None:
        return None
    height, width = rgb.shape[:2]
    side = round(max(face[2] - face[0], face[3] - face[1]) * CROP_MARGIN)
    if side >= CROP_BELOW * min(height, width):
        return None
    centre_x, centre_y = (face[0] + face[2]) // 2, (face[1] + face[3]) // 2
    x1 = min(max(centre_x - side // 2, 0), width - side)
    y1 = min(max(centre_y - side // 2, 0), height - side)
    # Without the mask's fallback to "all skin" under 5%: a small face is less than that of a wide photo.
    skin = skin_mask(rgb, min_skin_fraction=0.0)
    if skin.mean() < MIN_SKIN_FOUND or skin[y1:y1 + side, x1:x1 + side].sum() < SKIN_INSIDE * skin.sum():
        return None
    return x1, y1, x1 + side, y1 + side
