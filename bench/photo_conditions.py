r"""How much do a photo's colour, light and size change the count, and does the answer warn?

    python -m bench.photo_conditions --model model_store/trouble.mar \
        --gt data/acne04/train/annotations.json --limit 24 --out bench/results/photo_conditions_train24.json
    python -m bench.photo_conditions --model model_store/trouble.mar --gt data/acne04/train/annotations.json \
        --limit 12 --most-lesions --conditions "as it is,small: 320 px,small: 200 px,small: 128 px,small: 96 px" \
        --out bench/results/photo_conditions_train_most_lesions12.json
    python -m bench.photo_conditions --model model_store/trouble.mar --gt data/acne04/train/annotations.json \
        --limit 26 --darkest --conditions "as it is" --brighten-dark false \
        --out bench/results/photo_conditions_train_darkest26_unbrightened.json

Each of `--limit` annotated photos (spread evenly over the file) is changed as a phone, an app or a
filter would change it: turned grey or sepia, its colour faded, darkened, given a warm or cool cast,
or made small (a thumbnail from a messaging app). Every copy is saved as JPEG (quality 90, the
untouched row too) and run through the shared inference core at the model's own settings. The
table gives mAP50, the count error against the lesions marked (the photos' own boxes, scaled with
the photo), the grade accuracy, and the share of copies whose answer carried a warning, by code.

`--brighten-dark false` runs the model on dark photos as they are, not brightened as it is by default
(the archive's brighten_dark): the two tables side by side show what brightening does. `--darkest`
takes the darkest photos of the file, as they are the real dark photos the rule was chosen on.

Run on train photos, not valid ones: the warnings' thresholds and the brightening
(trouble/photo_checks.py) are chosen from this table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

if not __package__:  # run as `python bench/photo_conditions.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import (at_least, existing_path, list_of, output_file, parse_checked, run_context, run_main,
                             write_results)
from train.evaluate import EVAL_SCORE_FLOOR, evaluate, ground_truth_of, load_ground_truth, sample_ground_truth
from trouble.batch import predict_images
from trouble.images import upright_rgb
from trouble.inference import TroubleDetector
from trouble.skin import brightness


def times(rgb_factors):
    """Each pixel's R, G, B times these (a cast, or less light), as a camera's white balance would."""
    def change(photo: Image.Image) -> Image.Image:
        pixels = np.asarray(photo, dtype=np.float32) * np.asarray(rgb_factors, dtype=np.float32)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return change


def shorter_side(side: int):
    def change(photo: Image.Image) -> Image.Image:
        scale = side / min(photo.size)
        return photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.LANCZOS)
    return change


# (name, change): every change keeps the photo's frame, only its size may change.
CONDITIONS = [
    ("as it is", lambda photo: photo),
    ("grey", lambda photo: photo.convert("L").convert("RGB")),
    ("sepia", lambda photo: ImageOps.colorize(photo.convert("L"), (40, 20, 0), (255, 240, 200))),
    ("colour faded to 25%", lambda photo: ImageEnhance.Color(photo).enhance(0.25)),
    ("colour faded to 50%", lambda photo: ImageEnhance.Color(photo).enhance(0.5)),
    ("light at 30%", times((0.3, 0.3, 0.3))),
    ("light at 50%", times((0.5, 0.5, 0.5))),
    ("light at 70%", times((0.7, 0.7, 0.7))),
    ("warm cast (x 1, 0.85, 0.6)", times((1.0, 0.85, 0.6))),
    ("cool cast (x 0.75, 0.9, 1.15)", times((0.75, 0.9, 1.15))),
    ("small: 320 px", shorter_side(320)),
    ("small: 200 px", shorter_side(200)),
    ("small: 128 px", shorter_side(128)),
    ("small: 96 px", shorter_side(96)),
    ("small: 64 px", shorter_side(64)),
]
CONDITION_NAMES = [name for name, _ in CONDITIONS]


def changed_ground_truth(gt: dict, image_dir: Path, change, out_dir: Path) -> Path:
    """Each image of gt changed by `change`, saved as JPEG into out_dir with its boxes (scaled with
    the photo); → the new gt file."""
    images, scales = [], {}
    for image in gt["images"]:
        with Image.open(image_dir / image["file_name"]) as photo:
            photo = upright_rgb(photo)  # EXIF applied: the frame train.data writes boxes in
            changed = change(photo)
        name = Path(image["file_name"]).with_suffix(".jpg").name
        changed.save(out_dir / name, quality=90)
        scales[image["id"]] = changed.width / photo.width
        images.append(dict(image, file_name=name, width=changed.width, height=changed.height))
    annotations = []
    for a in gt["annotations"]:
        x, y, w, h = (v * scales[a["image_id"]] for v in a["bbox"])
        annotations.append(dict(a, bbox=[x, y, w, h], area=w * h))
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(dict(gt, images=images, annotations=annotations)))
    return path


def first_by(gt: dict, limit: int, key) -> dict:
    """The ground truth of the `limit` images first by key(image) (ties: the first in the file)."""
    return ground_truth_of(gt, {image["id"] for image in sorted(gt["images"], key=key)[:limit]})


def most_lesions(gt: dict, limit: int) -> dict:
    """The ground truth of the `limit` images with the most boxes."""
    boxes = Counter(a["image_id"] for a in gt["annotations"])
    return first_by(gt, limit, lambda image: -boxes[image["id"]])


def darkest(gt: dict, image_dir: Path, limit: int) -> dict:
    """The ground truth of the `limit` darkest images (trouble.skin.brightness), as they are."""
    def light(image):
        with Image.open(image_dir / image["file_name"]) as photo:
            return brightness(np.asarray(upright_rgb(photo)))
    return first_by(gt, limit, light)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.photo_conditions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path, help="a .mar or model folder")
    parser.add_argument("--gt", required=True, type=existing_path, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=at_least(1), default=40, help="N images, spread evenly over the file")
    sample = parser.add_mutually_exclusive_group()
    sample.add_argument("--most-lesions", action="store_true",
                        help="the N images with the most lesions marked instead (where a small photo merges most)")
    sample.add_argument("--darkest", action="store_true", help="the N darkest images instead")
    parser.add_argument("--conditions", type=list_of(str), default=CONDITION_NAMES,
                        help=f"comma-separated names of the rows to run (default: all): "
                             f"{', '.join(CONDITION_NAMES)}".replace("%", "%%"))  # argparse formats help with %
    parser.add_argument("--brighten-dark", choices=["true", "false"],
                        help="brighten dark photos for the model or not (default: the model's setting)")
    parser.add_argument("--out", required=True, type=output_file)
    args = parse_checked(parser, argv)
    unknown = [name for name in args.conditions if name not in CONDITION_NAMES]
    if unknown:
        parser.error(f"--conditions: unknown {unknown}; choose from {', '.join(CONDITION_NAMES)}")

    detector = TroubleDetector.from_path(args.model, device="cpu")
    if args.brighten_dark is not None:
        detector.settings.brighten_dark = args.brighten_dark == "true"
    gt = load_ground_truth(args.gt)[0]
    if args.most_lesions:
        gt = most_lesions(gt, args.limit)
    elif args.darkest:
        gt = darkest(gt, Path(args.gt).parent, args.limit)
    else:
        gt = sample_ground_truth(gt, args.limit)
    category_ids = {c["name"]: c["id"] for c in gt["categories"]}
    rows = []
    for name, change in [(name, change) for name, change in CONDITIONS if name in args.conditions]:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="photo-conditions-") as folder:
            changed_gt_path = changed_ground_truth(gt, Path(args.gt).parent, change, Path(folder))
            changed_gt = json.loads(changed_gt_path.read_text())
            predictions, responses = predict_images(
                detector, [(image["id"], Path(folder) / image["file_name"]) for image in changed_gt["images"]],
                category_ids, EVAL_SCORE_FLOOR)
        refused = [answer for answer in responses.values() if "error" in answer]
        if refused:  # every copy here is a photo the core should take: a refusal is a finding of its own
            raise SystemExit(f"error: {name}: {refused[0]['file_name']}: {refused[0]['error']}")
        metrics = evaluate(changed_gt, predictions, detector.thresholds, {"condition": name})
        block = metrics["at_thresholds"]
        # Of the photo only: count_capped is of the evaluation's floor threshold, where a pass often keeps its
        # limit of boxes (the model's own thresholds keep far fewer).
        photo_warnings = {image_id: [w["code"] for w in answer["warnings"] if w["code"] != "count_capped"]
                          for image_id, answer in responses.items()}
        warned = Counter(code for codes in photo_warnings.values() for code in codes)
        any_warning = sum(1 for codes in photo_warnings.values() if codes)
        rows.append({"condition": name, "mAP50": metrics["coco"]["mAP50"], "count_mae": block["count"]["mae"],
                     "count_bias": block["count"]["bias"],
                     "grade_accuracy": (block["grade"] or {}).get("accuracy"),
                     # At the model's thresholds (the predictions go down to the evaluation's floor).
                     "found": round(len(changed_gt["annotations"]) + block["count"]["bias"] * len(responses)),
                     "warned": round(any_warning / len(responses), 3), "warnings": dict(sorted(warned.items())),
                     "s_per_photo": round((time.perf_counter() - started) / len(responses), 2)})
        print(f"[photo conditions] {name}: mAP50 {rows[-1]['mAP50']:.3f}, warned {rows[-1]['warned']:.0%}", flush=True)

    marked = len(gt["annotations"])
    light = "dark photos brightened" if detector.settings.brighten_dark else "dark photos not brightened"
    print(f"\n{len(gt['images'])} photos of {args.gt} ({marked} lesions marked), each changed and saved as JPEG "
          f"quality 90 (CPU, the model's own settings, thresholds {detector.thresholds}; {light})")
    print("| photo | mAP50 | lesions found | count MAE (bias) | grade acc. | warned (codes) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        grade = "n/a" if row["grade_accuracy"] is None else f"{row['grade_accuracy']:.3f}"
        codes = ", ".join(f"{code} {n}" for code, n in row["warnings"].items()) or "none"
        print(f"| {row['condition']} | {row['mAP50']:.3f} | {row['found']} | {row['count_mae']:.2f} "
              f"({row['count_bias']:+.2f}) | {grade} | {row['warned']:.0%} ({codes}) |")
    write_results(args.out, {
        "model": str(args.model), "model_info": detector.model_info(), "context": run_context(detector),
        "gt": args.gt, "images": len(gt["images"]),
        "lesions_marked": marked, "jpeg_quality": 90,
        "sample": "the most lesions marked" if args.most_lesions else "the darkest" if args.darkest
        else "spread evenly over the file", "brighten_dark": detector.settings.brighten_dark,
        "thresholds": detector.thresholds, "rows": rows})


if __name__ == "__main__":
    run_main(main)
