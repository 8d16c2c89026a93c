r"""Does slicing help on large photos? mAP50, F1 and count error, the whole photo against slices.

    python -m bench.large_photos --model model_store/trouble.mar \
        --gt data/acne04/valid/annotations.json --limit 40 --scale 3 --out bench/results/large_photos_x3.json
    python -m bench.large_photos --model model_store/trouble.mar --layout canvas \
        --gt data/acne04/valid/annotations.json --limit 40 --scale 3 --out bench/results/large_photos_canvas_x3.json

Annotated large photos are not available here, so this makes them from `--limit` annotated
photos (spread evenly over the file), with their boxes, in one of two layouts:

- `enlarge`: each photo enlarged `--scale` times (Lanczos): a face photo taken at a higher
  resolution, every lesion `--scale` times bigger in pixels than in the original. An enlarged photo
  has no more detail than the original, so this measures what slicing does to the lesions' *scale*,
  not what extra detail would bring.
- `canvas`: each photo at its own size in the middle of a grey canvas `--scale` times as wide and
  high: a wide photo in which the face is small, its lesions as big in pixels as in the original.

Both are saved as JPEG quality 95 (like a phone) and every setting runs on them through the shared
inference core. "lesion scale" in the table: how big a lesion is for the model, relative to the
original photos (1.0 = as in them; for ACNE04, as in training): the model sees the whole photo, or
a slice of S px, resized to its input size.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

if not __package__:  # run as `python bench/large_photos.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import (at_least, existing_path, list_of, output_file, parse_checked,
                             pixels, positive_float, run_context, run_main, write_results)
from train.evaluate import evaluate, load_ground_truth, predict_ground_truth_images, sample_ground_truth
from trouble.images import upright_rgb
from trouble.inference import TroubleDetector


LAYOUTS = ("enlarge", "canvas")
CANVAS_GREY = (128, 128, 128)


def large_ground_truth(gt: dict, image_dir: Path, scale: float, layout: str, out_dir: Path) -> Path:
    """Write each image of gt as a photo `scale` times as large (see LAYOUTS) into out_dir, with its
    boxes; → the new gt file."""
    images, offsets = [], {}
    for image in gt["images"]:
        width, height = round(image["width"] * scale), round(image["height"] * scale)
        name = Path(image["file_name"]).with_suffix(".jpg").name
        with Image.open(image_dir / image["file_name"]) as photo:
            photo = upright_rgb(photo)  # EXIF applied: the frame train.data writes boxes in
            if layout == "enlarge":
                large, offsets[image["id"]] = photo.resize((width, height), Image.LANCZOS), (0, 0)
            else:
                large = Image.new("RGB", (width, height), CANVAS_GREY)
                offsets[image["id"]] = ((width - photo.width) // 2, (height - photo.height) // 2)
                large.paste(photo, offsets[image["id"]])
            large.save(out_dir / name, quality=95)
        images.append(dict(image, file_name=name, width=width, height=height))
    zoom = scale if layout == "enlarge" else 1.0  # how much bigger a lesion is than in the original
    annotations = []
    for a in gt["annotations"]:
        dx, dy = offsets[a["image_id"]]
        x, y, w, h = (v * zoom for v in a["bbox"])
        annotations.append(dict(a, bbox=[x + dx, y + dy, w, h], area=w * h))
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(dict(gt, images=images, annotations=annotations)))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.large_photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path, help="a .mar or model folder")
    parser.add_argument("--gt", required=True, type=existing_path, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=at_least(1), default=40, help="N images, spread evenly over the file")
    parser.add_argument("--scale", type=positive_float, default=3.0, help="how many times larger each photo becomes")
    parser.add_argument("--layout", choices=LAYOUTS, default="enlarge",
                        help="enlarge the photo, or put it on a larger grey canvas (see above)")
    parser.add_argument("--slice-sizes", default=[640, 960, 1280], type=list_of(pixels, may_be_empty=True),
                        help="comma-separated slice sizes (px of the enlarged photo) to compare with the whole "
                             "photo; \"\" for none (the whole-photo and framing rows only)")
    parser.add_argument("--out", required=True, type=output_file)
    args = parse_checked(parser, argv)
    slice_sizes = args.slice_sizes

    detector = TroubleDetector.from_path(args.model, device="cpu")
    gt = sample_ground_truth(load_ground_truth(args.gt)[0], args.limit)
    side = max(max(image["width"], image["height"]) for image in gt["images"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="large-photos-") as folder:
        large_gt = large_ground_truth(gt, Path(args.gt).parent, args.scale, args.layout, Path(folder))
        large_side = round(side * args.scale)
        zoom = args.scale if args.layout == "enlarge" else 1.0
        # (name, sliced, slice size, framing, lesion scale: the model sees the whole photo or a slice at its
        # input size; with framing, the face's crop, whose size depends on the photo)
        settings = [("whole photo", False, None, "none", detector.input_size / large_side * zoom),
                    ("whole photo, cropped to the face", False, None, "face", None)]
        settings += [(f"slices of {size} + whole photo", True, size, "none", detector.input_size / size * zoom)
                     for size in slice_sizes if size < large_side]
        for name, sliced, size, framing, lesion_scale in settings:
            detector.settings.framing = framing
            started = time.perf_counter()
            predictions, used_gt, _ = predict_ground_truth_images(detector, large_gt, sliced=sliced, slice_size=size)
            seconds = (time.perf_counter() - started) / len(used_gt["images"])
            metrics = evaluate(used_gt, predictions, detector.thresholds, {"setting": name})
            block = metrics["at_thresholds"]
            rows.append({"setting": name, "sliced": sliced, "slice_size": size, "framing": framing,
                         "lesion_scale": None if lesion_scale is None else round(lesion_scale, 2),
                         "mAP50": metrics["coco"]["mAP50"], "mean_f1": block["mean_f1"],
                         "count_mae": block["count"]["mae"], "count_bias": block["count"]["bias"],
                         "grade_accuracy": (block["grade"] or {}).get("accuracy"), "s_per_photo": round(seconds, 2)})
            print(f"[large photos] {name}: mAP50 {rows[-1]['mAP50']:.3f}", flush=True)

    made = (f"enlarged {args.scale}x to" if args.layout == "enlarge"
            else f"each in the middle of a grey canvas {args.scale}x as large,")
    print(f"\n{len(gt['images'])} photos of {args.gt} {made} about {large_side} px "
          f"(CPU, model input {detector.input_size} px, thresholds {detector.thresholds})")
    print("| setting | lesion scale | mAP50 | mean F1 | count MAE (bias) | grade acc. | s / photo |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        grade = "n/a" if row["grade_accuracy"] is None else f"{row['grade_accuracy']:.3f}"
        scale = "depends on the face" if row["lesion_scale"] is None else f"{row['lesion_scale']:.2f}"
        print(f"| {row['setting']} | {scale} | {row['mAP50']:.3f} | {row['mean_f1']:.3f} | "
              f"{row['count_mae']:.2f} ({row['count_bias']:+.2f}) | {grade} | {row['s_per_photo']} |")
    write_results(args.out, {
        "model": str(args.model), "gt": args.gt, "images": len(gt["images"]), "sample": "spread evenly over the file",
        "layout": args.layout, "scale": args.scale, "large_side": large_side, "input_size": detector.input_size,
        "thresholds": detector.thresholds, "context": run_context(detector), "rows": rows})


if __name__ == "__main__":
    run_main(main)
