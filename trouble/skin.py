"""Where the skin is in a photo: a colour-threshold mask for background removal, lesion pasting and
face framing. Why this method and its limits: see train/skin_mask.py.

Only numpy and OpenCV, so that what needs just the mask (face framing, the serving settings) does
not import torch or mmdet.
"""
from __future__ import annotations

import cv2
import numpy as np

# Chai & Ngan (1999) skin chroma box in YCrCb, Cr widened a little upwards so that reddened
# skin stays skin; lesions redder still are taken in by the hole filling below.
SKIN_CR = (133, 180)
SKIN_CB = (77, 135)
SKIN_MIN_Y = 40            # very dark pixels have unreliable chroma
MASK_WORK_SIDE = 256       # the mask is computed on a copy this size on the long side (speed)
CLOSE_FRACTION = 0.06      # closing kernel as a fraction of the long side: swallows lesions, pores
MARGIN_FRACTION = 0.02     # final dilation, so that lesions on the face's outline stay inside
MIN_SKIN_FRACTION = 0.05   # below this, the mask is not trusted and nothing is removed
STRICT_MIN_BRIGHTNESS = 0.65  # strict mask: luma at least this share of the skin's median luma
# Below this colour variety (see colour_variety) a photo has no colour to tell skin by: grey-scale,
# sepia, a tint or a filter that fades colour. All 1,274 ACNE04 photos score 3.6 or more (each in
# the middle of a plain canvas 3x its size too); sepia copies of 100 of them saved as JPEG at
# quality 50 to 95 at most 2.1, grey ones 0, with a red logo or a blue caption bar too
# (bench/colour_variety.py).
MIN_COLOUR_VARIETY = 2.25
CHROMA_SMOOTHING = 2.0     # Gaussian sigma, in pixels of the working copy: wider than JPEG's colour noise
# ... unless its colours are vivid (median chroma over this): flat colour graphics, a test pattern,
# are not photos without colour. A strong orange tint of a face photo has a median of 60 to 70.
TINT_MAX_CHROMA = 100


def skin_mask(rgb: np.ndarray, min_skin_fraction: float = MIN_SKIN_FRACTION, strict: bool = False) -> np.ndarray:
    """H x W bool array, True on skin, for an RGB uint8 image.

    Default (background removal): lesions, eyes and nostrils inside the face become skin (holes
    are filled), so masking never removes a lesion on the face; and when less than
    `min_skin_fraction` of the image looks like skin (odd lighting, a grey-scale photo),
    everything is kept, since a wrong mask would hide lesions.
    strict=True (where to paste lesions): only pixels of skin colour and of skin brightness (not
    much darker than the face's median), away from the outline, with no hole filling and no
    fallback: eyes, brows, hair, lips and existing lesions are not skin here.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"skin_mask needs an H x W x 3 image, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    small = working_copy(rgb)
    ycrcb = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]
    mask = ((cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])
            & (y >= SKIN_MIN_Y)).astype(np.uint8)

    side = max(small.shape[:2])
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc(max(1, side // 128)))  # speckles off
    if strict:
        # Brown hair, brows and shadows share skin's chroma but are darker than the face's skin.
        if mask.any():
            mask &= (y >= STRICT_MIN_BRIGHTNESS * np.median(y[mask > 0])).astype(np.uint8)
        # Keep away from the face's outline only: holes (lesions, eyes) are not grown.
        inside = cv2.erode(fill_holes(mask), disc(max(1, round(side * MARGIN_FRACTION))))
        mask &= inside
    else:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc(max(1, round(side * CLOSE_FRACTION))))
        mask = fill_holes(mask)
        mask = cv2.dilate(mask, disc(max(1, round(side * MARGIN_FRACTION))))
        if mask.mean() < min_skin_fraction:
            return np.ones((height, width), dtype=bool)
    if small.shape[:2] != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return mask.astype(bool)


def skin_fraction(rgb: np.ndarray) -> float | None:
    """The share of the photo that looks like skin (the default mask, with no fallback), or None
    for a photo without colour (grey-scale, sepia, a tint), where a colour mask cannot tell."""
    small = working_copy(rgb)  # the mask's own working size: the same answer, without scaling it back
    if colour_variety(small) < MIN_COLOUR_VARIETY:
        ycrcb = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2YCrCb).astype(np.int16)
        if np.median(np.abs(ycrcb[..., 1] - 128) + np.abs(ycrcb[..., 2] - 128)) <= TINT_MAX_CHROMA:
            return None
    return float(skin_mask(small, min_skin_fraction=0.0).mean())


def colour_variety(rgb: np.ndarray) -> float:
    """How much colour varies between pixels of the same brightness. Each pixel's chroma (Cr, Cb) is
    taken as an offset from the median chroma of its brightness level (32 levels), the offsets are
    smoothed over a few pixels, and at each level with at least 0.1% of the pixels the 90th
    percentile of |Cr| + |Cb| is taken; the median of that over the levels. In a grey, sepia or
    tinted photo colour follows brightness, and this is about 2 or less; in a colour photo of a face, skin,
    lesions, lips and hair of one brightness differ in colour. Smoothed: JPEG stores colour coarsely,
    which adds pixel-sized noise (a sepia copy at quality 75 had passed as colour), while lips and
    lesions are patches. Over the levels, not the pixels: a plain wall around a small face is one
    level, as is a coloured logo or caption on a grey photo."""
    small = working_copy(rgb)
    ycrcb = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    luma, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]
    level = (luma // 8).astype(np.int16)
    levels = [level == value for value in np.unique(level)]
    cr_offset, cb_offset = np.zeros_like(cr), np.zeros_like(cb)
    for here in levels:
        cr_offset[here] = cr[here] - np.median(cr[here])
        cb_offset[here] = cb[here] - np.median(cb[here])
    offset = (np.abs(cv2.GaussianBlur(cr_offset, (0, 0), CHROMA_SMOOTHING))
              + np.abs(cv2.GaussianBlur(cb_offset, (0, 0), CHROMA_SMOOTHING)))
    return float(np.median([np.percentile(offset[here], 90) for here in levels if here.mean() >= 0.001]))


def brightness(rgb: np.ndarray) -> float:
    """The 75th percentile of luma (0-255): the brightness of the photo's brighter quarter, which
    is the face in a close-up, even one on a dark background."""
    luma = cv2.cvtColor(np.ascontiguousarray(working_copy(rgb)), cv2.COLOR_RGB2GRAY)
    return float(np.percentile(luma, 75))


def working_copy(rgb: np.ndarray) -> np.ndarray:
    """The image at most MASK_WORK_SIDE on the long side, where the mask is computed."""
    height, width = rgb.shape[:2]
    scale = min(1.0, MASK_WORK_SIDE / max(height, width))
    if scale == 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Set to 1 every 0-region that does not touch the image border."""
    padded = np.pad(mask, 1, constant_values=0)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)  # the outside background becomes 1
    holes = flood[1:-1, 1:-1] == 0
    return (mask | holes).astype(np.uint8)
