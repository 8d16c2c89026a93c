"""Draw detections on a photo: one fixed colour per trouble type, with a legend strip.

Shared by the app (space/render.py) and the batch CLI (handler/predict_folder.py), so a type has
the same colour everywhere.
"""
from __future__ import annotations

import io
from datetime import datetime

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trouble import images  # also registers the HEIC reader with PIL, for load_photo
from trouble.photo_checks import brightened
from trouble.severity import lesions

# Okabe & Ito (2008) colour-blind-safe palette. Known lesion types keep the same colour in every
# model; blue and green hues first, because they stand out best on skin. The three types of the
# original study (comedone, papule, pustule) get green, blue and yellow: far apart in hue, where
# vermillion and orange (papule and pustule before) both read as orange on skin.
OKABE_ITO = {
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "blue": "#0072B2",
    "orange": "#E69F00",
    "yellow": "#F0E442",
    "black": "#000000",
}
TYPE_COLOURS = {
    "acne": OKABE_ITO["sky blue"],
    "comedone": OKABE_ITO["bluish green"],
    "blackhead": OKABE_ITO["bluish green"],
    "whitehead": OKABE_ITO["sky blue"],
    "papule": OKABE_ITO["blue"],
    "pustule": OKABE_ITO["yellow"],
    "nodule": OKABE_ITO["reddish purple"],
    "cyst": OKABE_ITO["vermillion"],
    "scar": OKABE_ITO["orange"],
}
# Photos are drawn on at most this many pixels on the long side: a 12 MP photo drawn at full size
# takes seconds to encode as PNG and is no clearer on a screen.
DISPLAY_MAX_SIDE = 2048


def palette_for(classes) -> dict:
    """{type: "#RRGGBB"} for a model's classes: fixed colours for known types, then the unused
    Okabe-Ito colours in class order (cycling only when a model has more than 8 types). Two known
    types of one colour (comedone, blackhead) in one model: the second takes an unused colour."""
    palette = {}
    for name in classes:
        if name in TYPE_COLOURS and TYPE_COLOURS[name] not in palette.values():
            palette[name] = TYPE_COLOURS[name]
    spare = [colour for colour in OKABE_ITO.values() if colour not in palette.values()]
    spare = spare or list(OKABE_ITO.values())
    for index, name in enumerate(name for name in classes if name not in palette):
        palette[name] = spare[index % len(spare)]
    return {name: palette[name] for name in classes}


def hex_to_rgb(colour: str) -> tuple:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def line_width_for(image_size) -> int:
    """Box outline width in pixels: visible on a phone photo and on a 640 px crop alike."""
    return max(3, round(max(image_size) / 300))


def fit_for_display(image: Image.Image, max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    image = image.convert("RGB")
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return image


def draw_detections(image: Image.Image, response: dict) -> Image.Image:
    """The photo with one rectangle per detection in its type's colour, and a legend strip below.

    `image` is the photo as shown (any size, orientation already applied); boxes in the response
    are in original-image pixels and are scaled to it.
    """
    photo = fit_for_display(image)
    gain = response["image"].get("brightened_by")
    if gain:  # a dark photo: shown as the model was given it, so that its boxes can be checked by eye
        photo = Image.fromarray(brightened(np.asarray(photo), gain))
    classes = response["model"]["classes"]
    palette = palette_for(classes)
    scale = photo.width / response["image"]["width"]
    width = line_width_for(photo.size)
    draw = ImageDraw.Draw(photo)
    # Lowest scores first, so the most certain boxes end up on top.
    for detection in sorted(response["detections"], key=lambda d: d["score"]):
        x1, y1, x2, y2 = (v * scale for v in detection["box"])
        colour = hex_to_rgb(palette.get(detection["type"], OKABE_ITO["black"]))
        # The line is drawn inside the box: at most an eighth of the box's side, so that a small
        # lesion on a large photo stays visible within its box.
        box_width = min(width, max(2, round(min(x2 - x1, y2 - y1) / 8)))
        # A 1 px dark rim either side of the coloured line keeps it visible on pale and dark skin.
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=(0, 0, 0), width=box_width + 2)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=box_width)
    return _with_legend_strip(photo, classes, response["counts"], palette, caption_for(response))


def analysis_time() -> str:
    """Now, as an answer's `analysed_at` holds it: local time with its offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def readable_time(iso: str) -> str:
    """"2026-10-01T14:22:05+02:00" → "2026-10-01 14:22+02:00"; a time without an offset (a camera's
    clock) without one."""
    return datetime.fromisoformat(iso).isoformat(" ", "minutes")


def caption_for(response: dict) -> str:
    """What the drawing must not lose once it is saved and shared on its own: when the photo was
    taken and analysed, the grade, what makes the count say little (the answer's warnings), a brightening,
    the thresholds, slicing or test-time augmentation where they were on, and that it is no diagnosis."""
    severity = response.get("severity") or {}
    settings = response.get("settings") or {}
    thresholds = thresholds_list(settings.get("score_thresholds", {}))
    parts = []
    if (response.get("image") or {}).get("taken_at"):
        parts.append(f"Taken {readable_time(response['image']['taken_at'])}.")
    if response.get("analysed_at"):  # set by the app and the batch CLI
        parts.append(f"Analysed {readable_time(response['analysed_at'])}.")
    if severity:
        parts.append(f"Severity grade {severity['grade']} ({severity['name']}): {lesions(severity['lesion_count'])}.")
    parts += [f"{warning['title']}: {warning['detail']}" for warning in response.get("warnings", [])]
    if (response.get("image") or {}).get("brightened_by"):
        parts.append("Drawn on the photo as brightened for the model.")
    if thresholds:
        parts.append(f"Score thresholds: {thresholds}.")
    if settings.get("slices"):  # the count depends on it: a drawing must say it was not the whole photo's
        parts.append(f"Sliced: {settings['slices']} slices of {settings.get('slice_size')} px"
                     f"{of_working_copy(response.get('image'))}.")
    if (settings.get("passes") or 1) > 1:
        parts.append(f"Test-time augmentation: {settings['passes']} passes.")
    model = response.get("model") or {}
    parts.append(f"Counted by the research model {model.get('name', '')} {model.get('version', '')}".rstrip()
                 + ": not a diagnosis.")
    return " ".join(parts)


def thresholds_list(thresholds: dict) -> str:
    """{type: threshold} → "comedone 0.30, papule 0.25": how the page and the drawings show them."""
    return ", ".join(f"{name} {value:.2f}" for name, value in thresholds.items())


def _wrapped(text: str, font, width: int) -> list:
    """Lines of `text` that fit `width` pixels in `font` (a word longer than that gets a line of its own)."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return lines + ([line] if line else [])


def _with_legend_strip(photo: Image.Image, classes, counts: dict, palette: dict, caption: str = "") -> Image.Image:
    """Append a white strip under the photo: a swatch and "type: count" per type, then the caption."""
    font_size = max(14, photo.width // 45)
    font = ImageFont.load_default(size=font_size)
    pad, swatch = font_size // 2, font_size
    entries = [(name, f"{name}: {counts.get(name, 0)}") for name in classes]
    # Wrap the entries into rows that fit the photo's width.
    rows, row, x = [], [], pad
    for name, text in entries:
        item_width = swatch + pad // 2 + int(font.getlength(text)) + 2 * pad
        if row and x + item_width > photo.width:
            rows.append(row)
            row, x = [], pad
        row.append((name, text, x))
        x += item_width
    rows.append(row)
    row_height = font_size + pad
    caption_lines = _wrapped(caption, font, photo.width - 2 * pad)
    strip = Image.new("RGB", (photo.width, photo.height + pad + row_height * (len(rows) + len(caption_lines))),
                      "white")
    strip.paste(photo, (0, 0))
    draw = ImageDraw.Draw(strip)
    for index, row in enumerate(rows):
        top = photo.height + pad + index * row_height
        for name, text, left in row:
            draw.rectangle((left, top, left + swatch, top + swatch), fill=hex_to_rgb(palette[name]),
                           outline=(0, 0, 0))
            draw.text((left + swatch + pad // 2, top + swatch / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    for index, line in enumerate(caption_lines):
        top = photo.height + pad + (len(rows) + index) * row_height
        draw.text((pad, top + swatch / 2), line, fill=(0, 0, 0), font=font, anchor="lm")
    return strip


def load_photo(image) -> Image.Image:
    """Bytes, a path, an RGB array or a PIL image → an RGB PIL image the right way up, with the
    pixels the model saw (16-bit scaled, transparency on white: trouble.images.to_rgb)."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif not isinstance(image, Image.Image):
        image = Image.open(image)
    return images.upright_rgb(image)


def annotate_image(image, response: dict) -> Image.Image:
    """`draw_detections` on a photo given as bytes, a path, an array or a PIL image."""
    return draw_detections(load_photo(image), response)


def of_working_copy(image: dict | None) -> str:
    """" of its WxH px working copy" when the photo was decoded smaller than it is (over 4096 px):
    slice sizes are in the working copy's pixels, not the photo's."""
    if not image or "working_width" not in image:
        return ""
    working = (image["working_width"], image["working_height"])
    return "" if working == (image["width"], image["height"]) else f" of its {working[0]}x{working[1]} px working copy"
