r"""How `no_colour` tells photos without colour from colour ones: trouble.skin.colour_variety of real
photos and of copies turned grey or sepia, or faded, each saved as JPEG at several qualities (a
messaging app saves at 70 to 80; a photo forwarded again and again ends lower).

    python -m bench.colour_variety --gt data/acne04/train/annotations.json --limit 100 \
        --out bench/results/colour_variety_train100.json

A photo scores under trouble.skin.MIN_COLOUR_VARIETY is judged to have no colour. The table gives,
per copy and JPEG quality, the lowest and highest score and the share judged so; no model runs.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

if not __package__:  # run as `python bench/colour_variety.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.arguments import at_least, existing_path, list_of, output_file, parse_checked, run_main, write_results
from train.evaluate import load_ground_truth, sample_ground_truth
from trouble.skin import MIN_COLOUR_VARIETY, colour_variety

# The common sepia matrix of photo apps (rows: R, G, B of the result from R, G, B of the photo).
SEPIA_MATRIX = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])

COPIES = [
    ("as it is", lambda photo: photo),
    ("grey", lambda photo: photo.convert("L").convert("RGB")),
    ("sepia (colorize, as bench.photo_conditions)",
     lambda photo: ImageOps.colorize(photo.convert("L"), (40, 20, 0), (255, 240, 200))),
    ("sepia (the apps' matrix)",
     lambda photo: Image.fromarray(np.clip(np.asarray(photo, float) @ SEPIA_MATRIX.T, 0, 255).astype(np.uint8))),
    ("colour faded to 50%", lambda photo: ImageEnhance.Color(photo).enhance(0.5)),
    ("colour faded to 25%", lambda photo: ImageEnhance.Color(photo).enhance(0.25)),
]


def jpeg_quality(text: str) -> int:
    value = at_least(1)(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"a JPEG quality is 1 to 100, got {value}")
    return value


def jpeg_copy(photo: Image.Image, quality: int) -> np.ndarray:
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=quality)
    return np.asarray(Image.open(out).convert("RGB"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.colour_variety", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, type=existing_path, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=at_least(1), default=100, help="N images, spread evenly over the file")
    parser.add_argument("--qualities", type=list_of(jpeg_quality), default=[95, 75, 50, 30], help="JPEG qualities")
    parser.add_argument("--out", required=True, type=output_file)
    args = parse_checked(parser, argv)

    gt = sample_ground_truth(load_ground_truth(args.gt)[0], args.limit)
    photos = [Image.open(Path(args.gt).parent / image["file_name"]).convert("RGB") for image in gt["images"]]
    rows = []
    for name, change in COPIES:
        changed = [change(photo) for photo in photos]
        for quality in args.qualities:
            scores = np.array([colour_variety(jpeg_copy(photo, quality)) for photo in changed])
            rows.append({"copy": name, "jpeg_quality": quality, "lowest": float(scores.min()),
                         "highest": float(scores.max()),
                         "judged_without_colour": float(np.mean(scores < MIN_COLOUR_VARIETY))})
    print(f"\ncolour_variety of {len(photos)} photos of {args.gt} (no colour under {MIN_COLOUR_VARIETY})")
    print("| copy | JPEG quality | lowest | highest | judged without colour |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['copy']} | {row['jpeg_quality']} | {row['lowest']:.2f} | {row['highest']:.2f} | "
              f"{row['judged_without_colour']:.0%} |")
    write_results(args.out, {"gt": args.gt, "images": len(photos), "sample": "spread evenly over the file",
                             "min_colour_variety": MIN_COLOUR_VARIETY, "rows": rows})


if __name__ == "__main__":
    run_main(main)
