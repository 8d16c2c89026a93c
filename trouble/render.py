"""Draw detections on a photo: one fixed colour per trouble type, with a legend.

Shared by the app and the batch CLI. The palette is Okabe & Ito's colour-blind-safe set,
assigned to types in the model's class order, so a type keeps its colour everywhere.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

# Okabe & Ito (2008), without black: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]


def type_colours(classes) -> dict:
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(classes)}


def load_photo(image) -> Image.Image:
    """Bytes, a path, an RGB array or a PIL image → an RGB PIL image the right way up."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif not isinstance(image, Image.Image):
        image = Image.open(image)
    return ImageOps.exif_transpose(image).convert("RGB")


def annotate_image(image, response: dict, max_side: int = 2048) -> Image.Image:
    """The photo with a box per detection in its type's colour and a legend with the counts."""
    photo = load_photo(image)
    width, height = response["image"]["width"], response["image"]["height"]
    if photo.size != (width, height):  # the response's boxes are in the original photo's pixels
        photo = photo.resize((width, height))
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        photo = photo.resize((round(width * scale), round(height * scale)))
    colours = type_colours(response["model"]["classes"])
    draw = ImageDraw.Draw(photo)
    line = max(2, round(max(photo.size) / 400))
    for detection in response["detections"]:
        x1, y1, x2, y2 = (v * scale for v in detection["box"])
        draw.rectangle([x1, y1, x2, y2], outline=colours[detection["type"]], width=line)
    _draw_legend(draw, photo.size, colours, response["counts"])
    return photo


def _draw_legend(draw: ImageDraw.ImageDraw, size, colours: dict, counts: dict):
    font_size = max(12, round(max(size) / 45))
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow without scalable default font
        font = ImageFont.load_default()
    pad, swatch = font_size // 2, font_size
    rows = [f"{name}: {counts.get(name, 0)}" for name in colours]
    text_width = max(draw.textlength(row, font=font) for row in rows)
    box_w, box_h = int(pad * 3 + swatch + text_width), int(pad + len(rows) * (font_size + pad))
    draw.rectangle([0, 0, box_w, box_h], fill=(255, 255, 255))
    for index, (name, row) in enumerate(zip(colours, rows)):
        top = pad + index * (font_size + pad)
        draw.rectangle([pad, top, pad + swatch, top + swatch], fill=colours[name], outline=(0, 0, 0))
        draw.text((pad * 2 + swatch, top), row, fill=(0, 0, 0), font=font)
