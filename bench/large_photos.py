"""Does slicing help on large photos? mAP50, F1 and count error on photos upscaled K times.

    python -m bench.large_photos --model model_store/trouble.mar \
        --gt data/acne04/valid/annotations.json --limit 40 --scale 3 --out bench/results/large_photos.json

A phone photo of a face is 3000-4000 px wide; the photos a model was trained on may be much
smaller (ACNE04's are 640 px), so in the phone photo every lesion is several times bigger than the
model ever saw. Annotated large photos are not available here, so this takes `--limit`
annotated photos (spread evenly over the file), enlarges each and its boxes `--scale` times
(Lanczos, saved as JPEG quality 95, like a phone), and scores each slicing setting on them
through the shared inference core. An upscaled photo has no more detail than the original, so
this measures what slicing does to the lesions' *scale*, not what extra detail would bring.

"lesion scale" in the table: how big a lesion is for the model, relative to the training photos
(1.0 = as in training); the model sees a slice of S px resized to its input size.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from train.evaluate import evaluate, load_ground_truth, predict_ground_truth_images, sample_ground_truth
from trouble.inference import TroubleDetector


def upscale_ground_truth(gt: dict, image_dir: Path, scale: float, out_dir: Path) -> Path:
    """Write each image of gt enlarged `scale` times into out_dir, with its boxes; → the new gt file."""
    images = []
    for image in gt["images"]:
        width, height = round(image["width"] * scale), round(image["height"] * scale)
        with Image.open(image_dir / image["file_name"]) as photo:
            photo.convert("RGB").resize((width, height), Image.LANCZOS).save(
                out_dir / Path(image["file_name"]).with_suffix(".jpg").name, quality=95)
        images.append(dict(image, file_name=Path(image["file_name"]).with_suffix(".jpg").name,
                           width=width, height=height))
    annotations = [dict(a, bbox=[v * scale for v in a["bbox"]], area=a["area"] * scale * scale)
                   for a in gt["annotations"]]
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(dict(gt, images=images, annotations=annotations)))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a .mar or model folder")
    parser.add_argument("--gt", required=True, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=int, default=40, help="N images, spread evenly over the file")
    parser.add_argument("--scale", type=float, default=3.0, help="how many times each photo is enlarged")
    parser.add_argument("--slice-sizes", default="640,960,1280",
                        help="comma-separated slice sizes (px of the enlarged photo) to compare with the whole photo")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    slice_sizes = [int(size) for size in args.slice_sizes.split(",") if size]

    detector = TroubleDetector.from_path(args.model, device="cpu")
    gt = sample_ground_truth(load_ground_truth(args.gt)[0], args.limit)
    trained_side = max(max(image["width"], image["height"]) for image in gt["images"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="large-photos-") as folder:
        large_gt = upscale_ground_truth(gt, Path(args.gt).parent, args.scale, Path(folder))
        large_side = round(trained_side * args.scale)
        # (name, sliced, slice size, what the model sees of one slice, relative to training)
        settings = [("whole photo", False, None, detector.input_size / trained_side)]
        settings += [(f"slices of {size} + whole photo", True, size, detector.input_size * args.scale / size)
                     for size in slice_sizes if size < large_side]
        for name, sliced, size, lesion_scale in settings:
            started = time.perf_counter()
            predictions, used_gt = predict_ground_truth_images(detector, large_gt, sliced=sliced, slice_size=size)
            seconds = (time.perf_counter() - started) / len(used_gt["images"])
            metrics = evaluate(used_gt, predictions, detector.thresholds, {"setting": name})
            block = metrics["at_thresholds"]
            rows.append({"setting": name, "sliced": sliced, "slice_size": size, "lesion_scale": round(lesion_scale, 2),
                         "mAP50": metrics["coco"]["mAP50"], "mean_f1": block["mean_f1"],
                         "count_mae": block["count"]["mae"], "count_bias": block["count"]["bias"],
                         "grade_accuracy": (block["grade"] or {}).get("accuracy"), "s_per_photo": round(seconds, 2)})
            print(f"[large photos] {name}: mAP50 {rows[-1]['mAP50']:.3f}", flush=True)

    print(f"\n{len(gt['images'])} photos of {args.gt} enlarged {args.scale}x to about {large_side} px "
          f"(CPU, model input {detector.input_size} px, thresholds {detector.thresholds})")
    print("| setting | lesion scale | mAP50 | mean F1 | count MAE (bias) | grade acc. | s / photo |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        grade = "n/a" if row["grade_accuracy"] is None else f"{row['grade_accuracy']:.3f}"
        print(f"| {row['setting']} | {row['lesion_scale']:.2f} | {row['mAP50']:.3f} | {row['mean_f1']:.3f} | "
              f"{row['count_mae']:.2f} ({row['count_bias']:+.2f}) | {grade} | {row['s_per_photo']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "model": str(args.model), "gt": args.gt, "images": len(gt["images"]), "sample": "spread evenly over the file",
        "scale": args.scale, "enlarged_side": large_side, "input_size": detector.input_size,
        "thresholds": detector.thresholds, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
