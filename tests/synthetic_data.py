r"""Generated face-like images with three visibly different lesion types, for tests.

    from tests.synthetic_data import make_dataset, make_image
    truth = make_dataset(tmp_path / "synth", n_images=8, fmt="coco")   # data set on disk + its truth
    image, boxes, labels = make_image(size=(1600, 1200), n_lesions=80, seed=1)  # one image in memory

Images: skin-toned background with a soft shading and a little noise. The i-th class is drawn in
the i-th style (cycling when there are more than three classes):
    comedone  small dark-brown dot                      (radius 3-5 px)
    papule    red disc with a lighter highlight         (radius 6-9 px)
    pustule   red disc with a yellow-white centre       (radius 7-10 px)
Lesions never overlap, and their size in pixels does not depend on the image size, so a large
image holds many small lesions. Boxes are [x, y, w, h] in pixels, tight around the drawn pixels.

make_dataset writes train/ and valid/ (valid gets n_images // 4 images, at least one). Lesion
counts cycle through LESION_COUNTS, so an 8-image set has negatives and all four Hayashi grades;
the image's "grade" is trouble.severity.grade_from_count of the lesions drawn and its "group"
cycles through GROUPS. Both are also in the file name (img003_g2_chin.jpg), which
GRADE_REGEX / GROUP_REGEX read back. Same arguments, same bytes.
"""

import json
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from trouble.severity import grade_from_count

LESION_TYPES = ("comedone", "papule", "pustule")
GROUPS = ("forehead", "cheek", "chin")
LESION_COUNTS = (0, 55, 3, 8, 24, 0, 14, 5)  # per image, cycling; the last two of 8 images are valid/
GRADE_REGEX = r"_g(\d)_"
GROUP_REGEX = r"_([a-z]+)\.jpg$"

SKIN = np.array([226.0, 180.0, 150.0])
# Style of class i % 3: (radius range, disc colour, inner disc colour, inner radius as a fraction, inner offset)
STYLES = (
    ((3, 5), (70, 45, 35), None, 0.0, 0.0),              # comedone: dark dot
    ((6, 9), (196, 62, 60), (228, 128, 118), 0.35, -0.3),  # papule: red, highlight up-left (raised)
    ((7, 10), (200, 72, 66), (250, 240, 200), 0.5, 0.0),    # pustule: red, yellow-white centre
)
GAP = 3  # pixels kept free between lesions and to the image border


def skin_background(width, height, rng):
    """Skin tone, brighter at the top and the centre, with a little noise: float array HxWx3."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 1.04 - 0.08 * ys / max(height - 1, 1)
    shade -= 0.10 * (((xs - width / 2) / (width / 2)) ** 2 + ((ys - height / 2) / (height / 2)) ** 2) / 2
    pixels = SKIN[None, None, :] * shade[:, :, None]
    return pixels + rng.normal(0.0, 3.0, size=pixels.shape)


def draw_disc(pixels, cx, cy, radius, colour):
    """Paint the pixels whose centre lies in the disc; return their tight box [x, y, w, h]."""
    height, width = pixels.shape[:2]
    x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, width)
    y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, height)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= radius ** 2
    pixels[y0:y1, x0:x1][inside] = colour
    rows, cols = np.nonzero(inside)
    left, top = x0 + cols.min(), y0 + rows.min()
    return [int(left), int(top), int(x0 + cols.max() + 1 - left), int(y0 + rows.max() + 1 - top)]


def make_image(size=(320, 320), n_lesions=6, seed=0, classes=LESION_TYPES):
    """One image: (PIL RGB image, boxes [[x, y, w, h], ...] in pixels, labels [class name, ...]).

    size is (width, height). Classes are used in turn; fewer lesions than asked are drawn when the
    image has no room left (the returned lists are the truth).
    """
    width, height = size
    rng = np.random.default_rng(seed)
    pixels = skin_background(width, height, rng)
    placed, boxes, labels = [], [], []  # placed: (cx, cy, radius)
    for i in range(n_lesions):
        style_index = i % len(classes) % len(STYLES)
        (r_min, r_max), colour, inner_colour, inner_fraction, inner_offset = STYLES[style_index]
        radius = rng.uniform(r_min, r_max)
        for _ in range(200):  # rejection sampling of a free spot
            cx = rng.uniform(radius + GAP, width - radius - GAP)
            cy = rng.uniform(radius + GAP, height - radius - GAP)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (radius + r + GAP) ** 2 for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        boxes.append(draw_disc(pixels, cx, cy, radius, colour))
        if inner_colour is not None:  # inside the disc, so the box stays the same
            offset = inner_offset * radius
            draw_disc(pixels, cx + offset, cy + offset, inner_fraction * radius, inner_colour)
        labels.append(classes[i % len(classes)])
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image, boxes, labels


def write_voc_xml(path, file_name, width, height, boxes, labels):
    """Pascal VOC: 1-based inclusive pixel indices (xmin = x + 1, xmax = x + w)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for (x, y, w, h), label in zip(boxes, labels):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
            ET.SubElement(bndbox, key).text = str(value)
    ET.ElementTree(root).write(path)


def make_dataset(out_dir, n_images=8, size=(320, 320), seed=0, fmt="coco", classes=LESION_TYPES):
    """Write a data set in `fmt` ("coco", "voc" or "yolo") under out_dir and return its truth:

    {"root", "format", "classes", "splits": {split: [{"file_name", "width", "height",
     "boxes": [[x, y, w, h], ...], "labels": [...], "grade", "group"}, ...]}}

    coco: out/<split>/annotations.json + images (the project layout, with grade and group).
    voc:  out/<split>/<name>.jpg with <name>.xml beside it.
    yolo: out/<split>/images/*.jpg, out/<split>/labels/*.txt (empty for negatives), out/data.yaml.
    """
    if fmt not in ("coco", "voc", "yolo"):
        raise ValueError(f"fmt must be coco, voc or yolo, not {fmt!r}")
    out_dir, classes = Path(out_dir), list(classes)
    n_valid = max(1, n_images // 4) if n_images > 1 else 0
    truth = {"root": str(out_dir), "format": fmt, "classes": classes, "splits": {"train": [], "valid": []}}
    for i in range(n_images):
        split = "train" if i < n_images - n_valid else "valid"
        image, boxes, labels = make_image(size, LESION_COUNTS[i % len(LESION_COUNTS)], seed * 1000 + i, classes)
        grade, group = grade_from_count(len(boxes)), GROUPS[i % len(GROUPS)]
        file_name = f"img{i:03d}_g{grade}_{group}.jpg"
        truth["splits"][split].append({"file_name": file_name, "width": size[0], "height": size[1], "boxes": boxes,
                                       "labels": labels, "grade": grade, "group": group})
        split_dir = out_dir / split
        image_dir = split_dir / "images" if fmt == "yolo" else split_dir
        image_dir.mkdir(parents=True, exist_ok=True)
        image.save(image_dir / file_name, quality=95)
        stem = Path(file_name).stem
        if fmt == "voc":
            write_voc_xml(split_dir / f"{stem}.xml", file_name, size[0], size[1], boxes, labels)
        elif fmt == "yolo":
            (split_dir / "labels").mkdir(exist_ok=True)
            lines = [f"{classes.index(label)} {(x + w / 2) / size[0]:.6f} {(y + h / 2) / size[1]:.6f} "
                     f"{w / size[0]:.6f} {h / size[1]:.6f}" for (x, y, w, h), label in zip(boxes, labels)]
            (split_dir / "labels" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))

    if fmt == "coco":
        for split, images in truth["splits"].items():
            categories = [{"id": i, "name": name} for i, name in enumerate(classes, 1)]
            coco = {"images": [], "annotations": [], "categories": categories}
            for image_id, image in enumerate(images, 1):
                coco["images"].append({"id": image_id, "file_name": image["file_name"], "width": image["width"],
                                       "height": image["height"], "grade": image["grade"], "group": image["group"]})
                for box, label in zip(image["boxes"], image["labels"]):
                    coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                                "category_id": classes.index(label) + 1, "bbox": box,
                                                "area": box[2] * box[3], "iscrowd": 0})
            (out_dir / split).mkdir(parents=True, exist_ok=True)
            (out_dir / split / "annotations.json").write_text(json.dumps(coco))
    elif fmt == "yolo":
        # JSON lists are YAML flow sequences; no PyYAML needed to write it
        (out_dir / "data.yaml").write_text(f"names: {json.dumps(classes)}\nnc: {len(classes)}\n")
    return truth


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height with almost no data: what a decompression bomb looks like."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a small generated three-type data set (comedone, papule, "
                                                 "pustule) in the project's COCO layout, to try the pipeline on.")
    parser.add_argument("out_dir", help="e.g. data/synthetic")
    parser.add_argument("n_images", nargs="?", type=int, default=16, help="images in all (default 16)")
    parser.add_argument("--format", choices=("coco", "voc", "yolo"), default="coco",
                        help="coco: ready for training; voc/yolo: to try the importer")
    args = parser.parse_args()
    # Never into an existing data set (an import's annotations were replaced, its photos unlisted).
    if Path(args.out_dir).exists() and (not Path(args.out_dir).is_dir() or any(Path(args.out_dir).iterdir())):
        parser.error(f"{args.out_dir} exists and is not an empty folder: give a new one")
    if args.n_images < 4:  # a quarter of them are the valid split
        parser.error(f"n_images must be at least 4 (a quarter of them are the valid split), got {args.n_images}")
    result = make_dataset(args.out_dir, n_images=args.n_images, fmt=args.format)
    print(f"wrote {result['root']}: " + ", ".join(f"{split} {len(images)} images"
                                                 for split, images in result["splits"].items()))


def garbled(jpeg: bytes, seed: int = 0) -> bytes:
    """A JPEG with 64 of its bytes, a third of the way in, replaced by noise (bit rot, a bad copy). No
    0xff among them: no marker, only codes that decode as something else."""
    noise = np.random.default_rng(seed).integers(0, 255, 64, dtype=np.uint8).tobytes()
    at = len(jpeg) // 3
    return jpeg[:at] + noise + jpeg[at + 64:]
