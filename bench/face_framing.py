r"""How often face framing crops to the face where the face is small: trouble.framing.face_crop on
photos set in the middle of a plain canvas several times their side (light, grey), and on grey-scale
copies (no skin colour to judge a crop by: never cropped). No model runs.

    python -m bench.face_framing --gt data/acne04/valid/annotations.json --limit 24 \
        --out bench/results/face_framing_canvas_valid24.json

A crop counts when it holds the photo's centre (where the face is). bench.large_photos measures what
the crop does to the count.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python bench/face_framing.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

from bench.arguments import (at_least, existing_path, list_of, output_file, parse_checked, run_context, run_main,
                             write_results)
from train.evaluate import load_ground_truth, sample_ground_truth
from trouble.framing import face_crop

FILLS = {"light (235)": 235, "grey (128)": 128}


def on_canvas(photo: Image.Image, times: int, fill: int) -> np.ndarray:
    canvas = Image.new("RGB", (photo.width * times, photo.height * times), (fill,) * 3)
    canvas.paste(photo, ((canvas.width - photo.width) // 2, (canvas.height - photo.height) // 2))
    return np.asarray(canvas)


def cropped_to_the_centre(rgb: np.ndarray) -> bool:
    crop = face_crop(rgb)
    height, width = rgb.shape[:2]
    return crop is not None and crop[0] <= width / 2 <= crop[2] and crop[1] <= height / 2 <= crop[3]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.face_framing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, type=existing_path, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=at_least(1), default=24, help="N images, spread evenly over the file")
    parser.add_argument("--times", type=list_of(at_least(1)), default=[1, 3, 4, 5, 6],
                        help="canvas sides, in photo sides (1: the photo alone)")
    parser.add_argument("--out", required=True, type=output_file)
    args = parse_checked(parser, argv)

    gt = sample_ground_truth(load_ground_truth(args.gt)[0], args.limit)
    photos = [Image.open(Path(args.gt).parent / image["file_name"]).convert("RGB") for image in gt["images"]]
    rows = []
    for times in args.times:
        for fill_name, fill in FILLS.items():
            if times == 1 and fill != 235:
                continue  # the photo alone has no canvas
            for grey in (False, True):
                copies = [photo.convert("L").convert("RGB") if grey else photo for photo in photos]
                cropped = sum(cropped_to_the_centre(on_canvas(photo, times, fill)) for photo in copies)
                rows.append({"canvas_times": times, "fill": "none" if times == 1 else fill_name,
                             "grey_scale": grey, "cropped": cropped, "photos": len(photos)})
    print(f"\nface framing on {len(photos)} photos of {args.gt}")
    print("| canvas (photo sides) | fill | photo | cropped to the face |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['canvas_times']} | {row['fill']} | {'grey-scale' if row['grey_scale'] else 'colour'} | "
              f"{row['cropped']} of {row['photos']} |")
    write_results(args.out, {"gt": args.gt, "images": len(photos), "sample": "spread evenly over the file",
                             "context": run_context(), "rows": rows})


if __name__ == "__main__":
    run_main(main)
