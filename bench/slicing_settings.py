r"""Choose the inference defaults by measurement: mAP50, mean F1 and count error per setting.

    python -m bench.slicing_settings --model model_store/trouble.mar \
        --gt data/acne04/valid/annotations.json --limit 60 --out bench/results/slicing_settings.json

Every setting runs through the shared inference core on the same images (`--limit` of them,
spread evenly over the file); the table prints the headline metrics and the CPU time per photo,
so that the defaults are a measured choice. Settings: the input size (the side each image or
slice is resized to for the model) and SAHI's slicing and merging.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

if not __package__:  # run as `python bench/slicing_settings.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import at_least, existing_path, output_file, parse_checked, run_context, run_main, write_results
from train.evaluate import evaluate, predict_ground_truth_images
from trouble.inference import TroubleDetector
from trouble.settings import SlicingSettings

# (name, input size, slicing). On ACNE04's 640x640 photos a 480 px slice gives 2x2 slices (plus
# the whole-image pass when it is on).
SETTINGS = [
    ("whole image, input 640", 640, dict(enabled=False)),
    ("whole image, input 720", 720, dict(enabled=False)),
    ("whole image, input 800", 800, dict(enabled=False)),
    ("whole image, input 960", 960, dict(enabled=False)),
    ("slice 480, GREEDYNMM/IOS 0.5, + whole-image pass, input 640", 640, dict(slice_size=480)),
    ("slice 480, NMS/IOU 0.5, + whole-image pass, input 640", 640,
     dict(slice_size=480, postprocess="NMS", match_metric="IOU")),
    ("slice 480, NMS/IOU 0.5, slices only, input 640", 640,
     dict(slice_size=480, postprocess="NMS", match_metric="IOU", full_image_pass=False)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.slicing_settings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path, help="a .mar or model folder")
    parser.add_argument("--gt", required=True, type=existing_path, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=at_least(1), default=60, help="N images, spread evenly over the file")
    parser.add_argument("--out", required=True, type=output_file)
    args = parse_checked(parser, argv)

    # SAHI's own defaults for merging, changed only where a row says so.
    base = {**asdict(SlicingSettings()), "postprocess": "GREEDYNMM", "match_metric": "IOS"}
    rows, detectors = [], {}
    for name, input_size, change in SETTINGS:
        if input_size not in detectors:
            detectors[input_size] = TroubleDetector.from_path(args.model, device="cpu", input_size=input_size)
        detector = detectors[input_size]
        detector.settings.slicing = SlicingSettings(**{**base, **change})
        started = time.perf_counter()
        predictions, gt, _ = predict_ground_truth_images(detector, args.gt, limit=args.limit)
        seconds = (time.perf_counter() - started) / len(gt["images"])
        metrics = evaluate(gt, predictions, detector.thresholds, {"setting": name})
        block = metrics["at_thresholds"]
        rows.append({"setting": name, "input_size": input_size, "slicing": asdict(detector.settings.slicing),
                     "mAP50": metrics["coco"]["mAP50"], "mean_f1": block["mean_f1"],
                     "count_mae": block["count"]["mae"], "grade_accuracy": (block["grade"] or {}).get("accuracy"),
                     "s_per_photo": round(seconds, 2)})
        print(f"[settings] {name}: mAP50 {rows[-1]['mAP50']:.3f}", flush=True)
    thresholds = next(iter(detectors.values())).thresholds
    print(f"\nInference settings on {len(gt['images'])} images of {args.gt} (CPU, thresholds {thresholds})")
    print("| setting | mAP50 | mean F1 | count MAE | grade acc. | s / photo |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['mAP50']:.3f} | {row['mean_f1']:.3f} | {row['count_mae']:.2f} | "
              f"{row['grade_accuracy'] if row['grade_accuracy'] is None else round(row['grade_accuracy'], 3)} | "
              f"{row['s_per_photo']} |")
    write_results(args.out, {"model": str(args.model), "gt": args.gt, "images": len(gt["images"]),
                             "sample": "spread evenly over the file", "thresholds": thresholds,
                             "context": run_context(detector, varied=("input_size",)),
                             "rows": rows})


if __name__ == "__main__":
    run_main(main)
