"""The original study's two data tricks, as plain functions and as mmdet pipeline transforms.

- Background removal: `MaskNonSkin` blacks out what `skin_mask` (trouble/skin.py: YCrCb colour
  thresholds plus morphology) does not mark as skin, in a pipeline. Put in the test
  pipeline, it also runs at inference, because the shared inference core builds its preprocessing
  from the config's test pipeline. Why this method and its limits: see train/skin_mask.py.
- Lesion copy-paste: `cut_lesion_patch` cuts a lesion with some skin around it, `paste_lesion`
  flips, rotates and resizes it at random, matches its colour to the new spot, blends it in with a
  feathered edge and returns its new box; it only lands on skin and never on another lesion.
  `LesionCopyPaste` does this inside a train pipeline, with patches cut from the images that
  passed through earlier (like mmdet's CachedMixUp); train/copy_paste.py writes an offline set.

Only numpy and OpenCV (which mmcv needs anyway): this module is packed into the TorchServe
archive with the rest of `trouble/` and is imported there.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from trouble.skin import MIN_SKIN_FRACTION, disc, skin_mask

# --------------------------------------------------------------------------------------------
# Background removal
# --------------------------------------------------------------------------------------------


@TRANSFORMS.register_module()
class MaskNonSkin(BaseTransform):
    """Black out what is not skin (`img` is BGR, as mmdet loads it). Boxes are left alone.

    Place it right after the image is loaded, in the train and in the test pipeline.
    """

    def __init__(self, min_skin_fraction: float = MIN_SKIN_FRACTION):
        self.min_skin_fraction = min_skin_fraction

    def transform(self, results: dict) -> dict:
        bgr = results["img"]
        mask = skin_mask(np.ascontiguousarray(bgr[:, :, ::-1]), self.min_skin_fraction)
        results["img"] = np.where(mask[:, :, None], bgr, 0).astype(bgr.dtype)
        return results

    def __repr__(self):
        return f"{self.__class__.__name__}(min_skin_fraction={self.min_skin_fraction})"


# --------------------------------------------------------------------------------------------
# Lesion copy-paste
# --------------------------------------------------------------------------------------------

CONTEXT = 0.75          # skin cut around a lesion, per side, as a fraction of its larger side
BLEND_AXES = 1.5        # the blended ellipse's axes over the lesion's: covers the box corners
FEATHER = 0.3           # blur sigma of the blend edge, as a fraction of the lesion's half-size
MIN_LESION_SIDE = 3     # smaller boxes are not cut (too few pixels to look like anything)
PLACEMENT_TRIES = 30
SPACING = 2             # pixels kept between a pasted lesion and any other box
MIN_SOURCE_SKIN = 0.9   # share of a patch's surroundings that must be skin to cut it
MIN_PASTE_SKIN = 1.0    # share of a pasted patch's blended zone that must land on skin
PASTE_CLEARANCE = 0.01  # pasted patches keep this share of the image side away from non-skin


def cut_lesion_patch(image: np.ndarray, box, label, other_boxes=(), skin=None):
    """Cut one lesion with skin around it; None when it is too small, crowded or not on skin.

    box and other_boxes are [x, y, w, h]. A lesion with another lesion's centre inside its blend
    zone is skipped, and other lesions reaching into the patch are marked so that the paste
    leaves them out: a pasted patch never carries an unlabelled neighbour along. With `skin` (a
    strict skin mask of the image), a lesion whose surroundings are less than MIN_SOURCE_SKIN
    skin (hairline, eyes, the face's outline) is skipped too.
    Returns {"pixels": h x w x 3 uint8, "box": [x, y, w, h] inside the patch, "label": label,
    "neighbours": h x w uint8, 1 on other lesions}.
    """
    x, y, w, h = (float(v) for v in box)
    if min(w, h) < MIN_LESION_SIDE:
        return None
    cx, cy = x + w / 2, y + h / 2
    for ox, oy, ow, oh in other_boxes:
        ocx, ocy = ox + ow / 2, oy + oh / 2
        if (ocx, ocy) != (cx, cy) and ((ocx - cx) / (w * BLEND_AXES / 2)) ** 2 + \
                ((ocy - cy) / (h * BLEND_AXES / 2)) ** 2 <= 1.0:
            return None
    height, width = image.shape[:2]
    margin = CONTEXT * max(w, h)
    x0, y0 = max(0, int(math.floor(x - margin))), max(0, int(math.floor(y - margin)))
    x1, y1 = min(width, int(math.ceil(x + w + margin))), min(height, int(math.ceil(y + h + margin)))
    if x1 - x0 < w or y1 - y0 < h:
        return None
    # Neighbouring lesions that reach into the patch are left out of the blend (see paste_lesion).
    neighbours = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    for ox, oy, ow, oh in other_boxes:
        if (ox, oy, ow, oh) != (x, y, w, h) and _overlaps((ox, oy, ow, oh), (x0, y0, x1 - x0, y1 - y0)):
            neighbours[max(0, int(oy) - y0):max(0, int(math.ceil(oy + oh)) - y0),
                       max(0, int(ox) - x0):max(0, int(math.ceil(ox + ow)) - x0)] = 1
    if skin is not None:
        around = neighbours == 0
        around[int(y) - y0:int(math.ceil(y + h)) - y0, int(x) - x0:int(math.ceil(x + w)) - x0] = False
        if around.any() and skin[y0:y1, x0:x1][around].mean() < MIN_SOURCE_SKIN:
            return None
    return {"pixels": image[y0:y1, x0:x1].copy(), "box": [x - x0, y - y0, w, h], "label": label,
            "neighbours": neighbours}


def paste_lesion(image: np.ndarray, patch: dict, skin: np.ndarray, occupied: list, rng,
                 scale_range=(0.75, 1.33), min_skin: float = MIN_PASTE_SKIN):
    """Paste one lesion patch into `image` (changed in place) at a random free spot on skin.

    The patch is flipped, resized and rotated at random, shifted to the colour of the skin it
    lands on, and blended through a feathered ellipse around the lesion. `occupied` holds the
    [x, y, w, h] boxes already in the image; the new box is appended to it and returned, or None
    when no spot on skin was free.
    """
    pixels = patch["pixels"].astype(np.float32)
    neighbours = patch["neighbours"]
    lx, ly, lw, lh = patch["box"]
    # Flip.
    if rng.random() < 0.5:
        pixels, neighbours = pixels[:, ::-1], neighbours[:, ::-1]
        lx = pixels.shape[1] - lx - lw
    if rng.random() < 0.5:
        pixels, neighbours = pixels[::-1], neighbours[::-1]
        ly = pixels.shape[0] - ly - lh
    # Resize.
    scale = float(rng.uniform(*scale_range))
    new_w = max(2, round(pixels.shape[1] * scale))
    new_h = max(2, round(pixels.shape[0] * scale))
    sx, sy = new_w / pixels.shape[1], new_h / pixels.shape[0]
    pixels = cv2.resize(np.ascontiguousarray(pixels), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    neighbours = cv2.resize(np.ascontiguousarray(neighbours), (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    lx, ly, lw, lh = lx * sx, ly * sy, lw * sx, lh * sy
    # The blend weight: a feathered ellipse around the lesion, drawn before rotating.
    half_w, half_h = lw / 2, lh / 2
    # Boxes count from pixel edges, OpenCV's drawing and warping from pixel centres: hence -0.5.
    centre = (lx + half_w - 0.5, ly + half_h - 0.5)
    alpha = np.zeros(pixels.shape[:2], dtype=np.float32)
    cv2.ellipse(alpha, (round(centre[0] * 16), round(centre[1] * 16)),
                (round(half_w * BLEND_AXES * 16), round(half_h * BLEND_AXES * 16)), 0, 0, 360, 1.0, -1,
                lineType=cv2.LINE_AA, shift=4)
    sigma = max(0.5, FEATHER * min(half_w, half_h))
    # Parts of other lesions in the patch stay out, with a margin the blur cannot cross.
    if neighbours.any():
        excluded = cv2.dilate(neighbours, disc(max(1, math.ceil(2 * sigma))))
        excluded[int(ly):int(math.ceil(ly + lh)), int(lx):int(math.ceil(lx + lw))] = 0  # the lesion stays whole
        alpha[excluded > 0] = 0
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    alpha = np.clip(alpha * 1.5, 0.0, 1.0)  # the blur lowers the middle too: bring it back to 1
    # Rotate about the lesion's centre, onto a canvas that holds the whole rotated patch.
    angle = float(rng.uniform(0, 360))
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    corners = np.array([[0, 0, 1], [new_w, 0, 1], [0, new_h, 1], [new_w, new_h, 1]], dtype=np.float64)
    turned = corners @ turn.T
    left, top = turned.min(0)
    canvas_w = int(math.ceil(turned[:, 0].max() - left))
    canvas_h = int(math.ceil(turned[:, 1].max() - top))
    turn[:, 2] -= (left, top)
    pixels = cv2.warpAffine(pixels, turn, (canvas_w, canvas_h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.warpAffine(alpha, turn, (canvas_w, canvas_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    centre = turn @ np.array([centre[0], centre[1], 1.0]) + 0.5  # back to pixel edges
    # The rotated lesion's box: the bounding box of its ellipse turned by `angle`.
    theta = math.radians(angle)
    box_half_w = math.sqrt((half_w * math.cos(theta)) ** 2 + (half_h * math.sin(theta)) ** 2)
    box_half_h = math.sqrt((half_w * math.sin(theta)) ** 2 + (half_h * math.cos(theta)) ** 2)

    blend_zone = alpha > 0.05
    height, width = image.shape[:2]
    if canvas_w >= width or canvas_h >= height or not blend_zone.any():
        return None
    rows, cols = np.nonzero(blend_zone)
    zone = [cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()]
    for _ in range(PLACEMENT_TRIES):
        x0 = int(rng.integers(0, width - canvas_w + 1))
        y0 = int(rng.integers(0, height - canvas_h + 1))
        # The whole blended zone, not only the box, must land on skin and cover no other lesion.
        if skin[y0:y0 + canvas_h, x0:x0 + canvas_w][blend_zone].mean() < min_skin:
            continue
        if any(_overlaps((x0 + zone[0], y0 + zone[1], zone[2], zone[3]), other, SPACING) for other in occupied):
            continue
        region = image[y0:y0 + canvas_h, x0:x0 + canvas_w].astype(np.float32)
        # Move the patch's surrounding skin to the colour of the skin it lands on.
        ring = (alpha > 0.05) & (alpha < 0.6)
        if ring.any():
            pixels = pixels + (region[ring].mean(0) - pixels[ring].mean(0))
        blended = alpha[:, :, None] * pixels + (1 - alpha[:, :, None]) * region
        image[y0:y0 + canvas_h, x0:x0 + canvas_w] = np.clip(np.rint(blended), 0, 255).astype(image.dtype)
        left, top = max(0.0, x0 + centre[0] - box_half_w), max(0.0, y0 + centre[1] - box_half_h)
        right, bottom = min(width, x0 + centre[0] + box_half_w), min(height, y0 + centre[1] + box_half_h)
        box = [float(left), float(top), float(right - left), float(bottom - top)]
        occupied.append(box)
        return box
    return None


def _overlaps(a, b, spacing=0.0) -> bool:
    return (a[0] < b[0] + b[2] + spacing and b[0] < a[0] + a[2] + spacing
            and a[1] < b[1] + b[3] + spacing and b[1] < a[1] + a[3] + spacing)


class PatchBank:
    """At most `size` lesion patches, a uniform sample of all those offered (reservoir sampling)."""

    def __init__(self, size: int, rng):
        self.size, self.rng, self.patches, self.seen = size, rng, [], 0

    def offer(self, patch):
        if patch is None:
            return
        self.seen += 1
        if len(self.patches) < self.size:
            self.patches.append(patch)
        else:
            slot = int(self.rng.integers(0, self.seen))
            if slot < self.size:
                self.patches[slot] = patch

    def add_image(self, image, boxes, labels, skin=None):
        """Offer every lesion of an image; `skin`: its strict skin mask (see cut_lesion_patch)."""
        for box, label in zip(boxes, labels):
            self.offer(cut_lesion_patch(image, box, label, boxes, skin))

    def draw(self):
        return self.patches[int(self.rng.integers(0, len(self.patches)))]

    def __len__(self):
        return len(self.patches)


def paste_lesions(image, boxes, bank: PatchBank, count: int, skin: np.ndarray, rng,
                  scale_range=(0.75, 1.33), min_skin: float = MIN_PASTE_SKIN):
    """Paste up to `count` lesions from the bank into `image` (in place).

    `skin` is the image's strict skin mask; patches keep a small clearance from whatever is not
    skin (eyes, brows, hair, lesions). Returns (new boxes [x, y, w, h], their labels); fewer than
    `count` when the skin is full.
    """
    clearance = max(1, round(max(skin.shape) * PASTE_CLEARANCE))
    skin = cv2.erode(skin.astype(np.uint8), disc(clearance)).astype(bool)
    occupied = [list(map(float, b)) for b in boxes]
    new_boxes, new_labels = [], []
    for _ in range(count):
        if not len(bank):
            break
        patch = bank.draw()
        box = paste_lesion(image, patch, skin, occupied, rng, scale_range, min_skin)
        if box is not None:
            new_boxes.append(box)
            new_labels.append(patch["label"])
    return new_boxes, new_labels


@TRANSFORMS.register_module()
class LesionCopyPaste(BaseTransform):
    """Paste lesions cut from earlier training images onto this one; their boxes join the labels.

    Put it right after LoadAnnotations. Every image that passes adds its lesions to a bank of at
    most `bank_size` patches (per data-loader worker); with probability `prob` the image then gets
    `num_pastes` (a range) lesions from the bank, only where its skin mask says skin and never on
    another box. `onto='negatives'` pastes only onto images without boxes; `'all'` onto any.

    Args:
        prob: chance that an eligible image gets lesions pasted.
        num_pastes: (min, max) lesions pasted per image, both included.
        onto: 'all' or 'negatives'.
        bank_size: patches kept per worker.
        scale_range: random resize factor of each patch.
        min_skin: share of a pasted patch's blended zone that must land on skin.
    """

    def __init__(self, prob: float = 0.5, num_pastes=(3, 10), onto: str = "all", bank_size: int = 500,
                 scale_range=(0.75, 1.33), min_skin: float = MIN_PASTE_SKIN):
        if onto not in ("all", "negatives"):
            raise ValueError(f"LesionCopyPaste: onto must be 'all' or 'negatives', got {onto!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"LesionCopyPaste: prob must be in [0, 1], got {prob}")
        if isinstance(num_pastes, int):  # one number: exactly that many
            num_pastes = (num_pastes, num_pastes)
        if not (isinstance(num_pastes, (tuple, list)) and len(num_pastes) == 2
                and 1 <= int(num_pastes[0]) <= int(num_pastes[1])):  # found here, not mid-training
            raise ValueError(f"LesionCopyPaste: num_pastes must be N or (min, max) with 1 <= min <= max, "
                             f"got {num_pastes!r}")
        if not (isinstance(bank_size, int) and bank_size >= 1):
            raise ValueError(f"LesionCopyPaste: bank_size must be at least 1, got {bank_size!r}")
        if not (len(scale_range) == 2 and 0 < scale_range[0] <= scale_range[1]):
            raise ValueError(f"LesionCopyPaste: scale_range must be (low, high) with 0 < low <= high, "
                             f"got {scale_range!r}")
        self.prob, self.onto, self.bank_size = prob, onto, bank_size
        self.num_pastes = (int(num_pastes[0]), int(num_pastes[1]))
        self.scale_range, self.min_skin = tuple(scale_range), min_skin
        self.bank = None  # made on first use, inside the worker process

    def transform(self, results: dict) -> dict:
        from mmdet.structures.bbox import HorizontalBoxes

        # Seeded from numpy's global generator, which mmengine seeds per worker (`randomness`).
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        if self.bank is None:
            self.bank = PatchBank(self.bank_size, rng)
        image = results["img"]
        gt = results.get("gt_bboxes")
        xyxy = gt.numpy() if hasattr(gt, "numpy") else np.zeros((0, 4), dtype=np.float32)
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(results.get("gt_bboxes_labels", np.zeros(0)), dtype=np.int64)
        ignore = np.asarray(results.get("gt_ignore_flags", np.zeros(len(labels), bool)), dtype=bool)
        boxes = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in xyxy.tolist()]

        skin = skin_mask(np.ascontiguousarray(image[:, :, ::-1]), strict=True)  # mmdet images are BGR
        # Patches come from the image as loaded, so pasted lesions are never cut again.
        self.bank.add_image(image, [b for b, i in zip(boxes, ignore) if not i], labels[~ignore].tolist(), skin)
        if (self.onto == "negatives" and len(boxes)) or rng.random() >= self.prob or not len(self.bank):
            return results
        count = int(rng.integers(self.num_pastes[0], self.num_pastes[1] + 1))
        image = image.copy()
        new_boxes, new_labels = paste_lesions(image, boxes, self.bank, count, skin, rng,
                                              self.scale_range, self.min_skin)
        results["img"] = image
        if new_boxes:
            added = np.array([[x, y, x + w, y + h] for x, y, w, h in new_boxes], dtype=np.float32)
            results["gt_bboxes"] = HorizontalBoxes(np.concatenate([xyxy, added]))
            results["gt_bboxes_labels"] = np.concatenate([labels, np.array(new_labels, dtype=np.int64)])
            results["gt_ignore_flags"] = np.concatenate([ignore, np.zeros(len(new_boxes), dtype=bool)])
        return results

    def __repr__(self):
        return (f"{self.__class__.__name__}(prob={self.prob}, num_pastes={self.num_pastes}, onto={self.onto!r}, "
                f"bank_size={self.bank_size}, scale_range={self.scale_range}, min_skin={self.min_skin})")
