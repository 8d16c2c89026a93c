r"""Which test-time augmentation is worth its passes? mAP50, F1 and count error per set of passes.

    python -m bench.test_time_augmentation --model model_store/trouble.mar \
        --gt data/acne04/train/annotations.json --limit 150 --sizes 640,720,800 \
        --out bench/results/tta_train150.json

Every pass the rows need (each size, as it is and mirrored) runs once per photo through the
inference core's own model pass; each row then fuses its passes with the core's fusion
(trouble/fusion.py), or merges them with NMS for comparison, and is scored with train.evaluate.
Photos go through whole (no slicing, no framing). Run it on photos the reported figures do not
come from (train, not valid): the rows choose the passes and the served thresholds.

The F1, count error and grade accuracy are given at each row's F1-optimal threshold, since fused
scores need their own (a fused score averages over the passes, 0 where a pass missed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

if not __package__:  # run as `python bench/test_time_augmentation.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import (at_least, existing_path, list_of, output_file, parse_checked,
                             pixels, run_context, run_main, unit_fraction, write_results)
from bench.nms_iou import stricter_nms
from train.evaluate import EvaluationError, evaluate, load_ground_truth, sample_ground_truth
from trouble.fusion import fuse_passes
from trouble.images import upright_rgb
from trouble.inference import TroubleDetector


def coco_results(outputs: dict, category_ids: dict) -> list:
    """outputs: {image id: [(boxes, scores, labels), ...]} → COCO results, every box of every entry."""
    return [{"image_id": image_id, "category_id": category_ids[int(label)], "score": float(score),
             "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
            for image_id, results in outputs.items() for boxes, scores, labels in results
            for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels)]


def score_row(gt, predictions, threshold) -> dict:
    """COCO results → the metrics of one row."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its own tables
        metrics = evaluate(gt, predictions, threshold)
    optimal = metrics["at_f1_optimal_thresholds"]
    return {"mAP50": metrics["coco"]["mAP50"], "f1_optimal_thresholds": metrics["f1_optimal_thresholds"],
            "mean_f1": optimal["mean_f1"], "count_mae": optimal["count"]["mae"], "count_bias": optimal["count"]["bias"],
            "grade_accuracy": (optimal["grade"] or {}).get("accuracy")}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.test_time_augmentation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path, help="a .mar or model folder")
    parser.add_argument("--gt", required=True, type=existing_path, help="ground truth in the project's COCO layout")
    parser.add_argument("--limit", type=at_least(1), default=150, help="N images, spread evenly over the file")
    parser.add_argument("--sizes", default=[640, 720, 800], type=list_of(pixels),
                        help="comma-separated input sizes to try")
    parser.add_argument("--fuse-iou", type=unit_fraction, default=0.55,
                        help="IoU at which boxes are fused (or suppressed)")
    parser.add_argument("--out", required=True, type=output_file, help="JSON file for the rows")
    args = parse_checked(parser, argv)
    sizes = args.sizes

    detector = TroubleDetector.from_path(args.model, device="cpu")
    model = detector.sahi_model
    gt = sample_ground_truth(load_ground_truth(args.gt)[0], args.limit)
    missing = sorted(set(detector.classes) - {c["name"] for c in gt["categories"]})
    if missing:
        raise EvaluationError(f"the model's types {missing} are not categories of {args.gt}")
    category_ids = {index: next(c["id"] for c in gt["categories"] if c["name"] == name)
                    for index, name in enumerate(detector.classes)}
    passes = [(size, mirrored) for size in sizes for mirrored in (False, True)]
    raw, seconds = {}, {p: 0.0 for p in passes}  # raw[(pass, image id)] = (boxes, scores, labels)
    for image in gt["images"]:
        with Image.open(Path(args.gt).parent / image["file_name"]) as photo:
            rgb = np.asarray(upright_rgb(photo))  # EXIF applied: the frame train.data writes boxes in
        for one_pass in passes:
            started = time.perf_counter()
            raw[one_pass, image["id"]] = model.forward_pass([rgb], *one_pass)[0]
            seconds[one_pass] += time.perf_counter() - started
    print(f"[tta] ran {len(passes)} passes over {len(gt['images'])} photos", flush=True)

    # (name, passes, merge); every single size, the served size mirrored, and sizes together.
    served = detector.input_size
    rows_wanted = [(f"{size}", [(size, False)], "one") for size in sizes]
    if served in sizes:
        rows_wanted.append((f"{served} + mirrored", [(served, False), (served, True)], "fuse"))
    for count in range(2, len(sizes) + 1):
        for group in itertools.combinations(sizes, count):
            name = " + ".join(str(size) for size in group)
            rows_wanted.append((name, [(size, False) for size in group], "fuse"))
            both = [(size, mirrored) for size in group for mirrored in (False, True)]
            rows_wanted.append((f"{name}, each mirrored too", both, "fuse"))
            rows_wanted.append((f"{name}, each mirrored too (NMS instead of fusion)", both, "nms"))
    rows = []
    for name, row_passes, merge in rows_wanted:
        outputs = {image["id"]: [raw[one_pass, image["id"]] for one_pass in row_passes] for image in gt["images"]}
        if merge == "fuse":
            outputs = {image_id: [fuse_passes(results, args.fuse_iou)] for image_id, results in outputs.items()}
        predictions = coco_results(outputs, category_ids)
        if merge == "nms":  # the passes' boxes pooled, then NMS per image and type: the plain alternative
            predictions = stricter_nms(predictions, args.fuse_iou)
        row = {"passes": name, "count": len(row_passes), "merge": merge,
               **score_row(gt, predictions, detector.thresholds),
               "s_per_photo": round(sum(seconds[p] for p in row_passes) / len(gt["images"]), 2)}
        rows.append(row)
        print(f"[tta] {name}: mAP50 {row['mAP50']:.3f}", flush=True)

    print(f"\nTest-time augmentation on {len(gt['images'])} photos of {args.gt} (CPU, whole photos, fusion IoU "
          f"{args.fuse_iou}); F1, count error and grade at each row's F1-optimal threshold")
    print("| passes | n | mAP50 | F1 | threshold | count MAE (bias) | grade acc. | s / photo |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        grade = "n/a" if row["grade_accuracy"] is None else f"{row['grade_accuracy']:.3f}"
        threshold = ", ".join(f"{value:.3f}" for value in row["f1_optimal_thresholds"].values())
        print(f"| {row['passes']} | {row['count']} | {row['mAP50']:.3f} | {row['mean_f1']:.3f} | {threshold} | "
              f"{row['count_mae']:.2f} ({row['count_bias']:+.2f}) | {grade} | {row['s_per_photo']} |")
    write_results(args.out, {
        "model": str(args.model), "gt": args.gt, "images": len(gt["images"]), "sample": "spread evenly over the file",
        "fuse_iou": args.fuse_iou, "nms_iou": detector.nms_iou, "context": run_context(detector), "rows": rows})


if __name__ == "__main__":
    run_main(main)
