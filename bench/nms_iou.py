r"""Choose the model's NMS IoU threshold from an evaluation's saved detections (no second model run),
and see whether suppressing nested boxes (one box mostly inside another) would help.

    python -m train.evaluate --model model_store/trouble.mar --gt data/acne04/train/annotations.json \
        --limit 150 --sliced false --out reports/train150                 # writes predictions.json
    python -m bench.nms_iou --predictions reports/train150/predictions.json \
        --gt data/acne04/train/annotations.json --limit 150 --ious 0.6,0.55,0.5,0.45,0.4 \
        --threshold 0.2296 --out bench/results/nms_iou_train150.json

The saved detections have been through the model's own NMS already (TOOD: IoU 0.6); each row
applies a stricter NMS on top, per image and type, and scores what is left. That is close to,
not the same as, the model's NMS at that IoU (greedy suppression chains differ a little, and the
model keeps at most 300 boxes per image first): confirm a choice with `train.evaluate --model ...
--nms-iou X`, and make it on a split that the reported figures do not come from.

--nested adds rows that suppress nested boxes instead: greedy NMS in which the overlap is
measured over the smaller box (intersection over smaller, IoS), so that a box lying at least that
share inside a higher-scoring box of the same type, or holding one, is dropped. IoU misses these
pairs: a small box inside a large one has a small IoU.

    python -m bench.nms_iou --predictions reports/train150/predictions.json \
        --gt data/acne04/train/annotations.json --limit 150 --ious 0.55 --nested 0.9,0.8,0.7,0.6 \
        --threshold 0.2296 --out bench/results/nested_boxes_train150.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import sys
import torch
from mmcv.ops import nms

if not __package__:  # run as `python bench/nms_iou.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import (at_least, existing_file, existing_path, list_of, output_file, parse_checked,
                             read_predictions, run_context, run_main, score, unit_fraction, write_results)
from train.evaluate import evaluate


def by_image_and_type(predictions: list) -> list:
    """COCO results grouped by (image, type): suppression never acts across them."""
    groups = defaultdict(list)
    for prediction in predictions:
        groups[prediction["image_id"], prediction["category_id"]].append(prediction)
    return list(groups.values())


def stricter_nms(predictions: list, iou: float) -> list:
    """Greedy NMS at `iou` within each (image, type) group of COCO results."""
    kept = []
    for group in by_image_and_type(predictions):
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (p["bbox"] for p in group)], dtype=torch.float32)
        _, keep = nms(boxes, torch.tensor([p["score"] for p in group], dtype=torch.float32), iou)
        kept += [group[index] for index in keep.tolist()]
    return kept


def nested_suppression(predictions: list, ios: float) -> list:
    """Greedy NMS at intersection-over-smaller `ios` within each (image, type) group of COCO results."""
    kept = []
    for group in by_image_and_type(predictions):
        group = sorted(group, key=lambda p: -p["score"])
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (p["bbox"] for p in group)], dtype=np.float64)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        suppressed = np.zeros(len(group), bool)
        for index in range(len(group)):
            if suppressed[index]:
                continue
            kept.append(group[index])
            rest = np.arange(index + 1, len(group))
            width = np.minimum(boxes[index, 2], boxes[rest, 2]) - np.maximum(boxes[index, 0], boxes[rest, 0])
            height = np.minimum(boxes[index, 3], boxes[rest, 3]) - np.maximum(boxes[index, 1], boxes[rest, 1])
            inter = np.clip(width, 0, None) * np.clip(height, 0, None)
            smaller = np.maximum(np.minimum(areas[index], areas[rest]), 1e-9)
            suppressed[rest[inter / smaller >= ios]] = True
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.nms_iou", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, type=existing_file, help="an evaluation's predictions.json")
    parser.add_argument("--gt", required=True, type=existing_path, help="the ground truth it was run on")
    parser.add_argument("--limit", type=at_least(1),
                        help="the --limit the evaluation used (the same images are scored)")
    parser.add_argument("--ious", default=[0.6, 0.55, 0.5, 0.45, 0.4], type=list_of(unit_fraction),
                        help="comma-separated IoU thresholds")
    parser.add_argument("--nested", default=[], type=list_of(unit_fraction),
                        help="comma-separated IoS thresholds: rows that suppress nested boxes instead")
    parser.add_argument("--threshold", type=score, default=0.3, help="score threshold for F1, counts and grades")
    parser.add_argument("--out", required=True, type=output_file, help="JSON file for the rows")
    args = parse_checked(parser, argv)

    gt, predictions = read_predictions(args.predictions, args.gt, args.limit)
    images = gt["images"]
    rows = []
    variants = ([("nms_iou", iou, stricter_nms(predictions, iou)) for iou in args.ious]
                + [("nested_ios", ios, nested_suppression(predictions, ios)) for ios in args.nested])
    for kind, value, kept in variants:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its own tables
            metrics = evaluate(gt, kept, args.threshold)
        block = metrics["at_thresholds"]
        rows.append({kind: value, "detections": len(kept), "mAP50": metrics["coco"]["mAP50"],
                     "mean_f1": block["mean_f1"], "count_mae": block["count"]["mae"],
                     "count_bias": block["count"]["bias"], "grade_accuracy": (block["grade"] or {}).get("accuracy"),
                     "f1_optimal_thresholds": metrics["f1_optimal_thresholds"]})

    print(f"Suppression on {len(images)} images of {args.gt} (score threshold {args.threshold}; applied "
          f"to {args.predictions})")
    print("| suppression | detections | mAP50 | mean F1 | count MAE (bias) | grade acc. | F1-optimal threshold |\n"
          "|---|---|---|---|---|---|---|")
    for row in rows:
        grade = "n/a" if row["grade_accuracy"] is None else f"{row['grade_accuracy']:.3f}"
        thresholds = row["f1_optimal_thresholds"]
        optimal = ", ".join(f"{value:.3f}" if len(thresholds) == 1 else f"{name} {value:.3f}"
                            for name, value in thresholds.items())
        label = f"NMS IoU {row['nms_iou']}" if "nms_iou" in row else f"nested IoS {row['nested_ios']}"
        print(f"| {label} | {row['detections']} | {row['mAP50']:.4f} | {row['mean_f1']:.3f} | "
              f"{row['count_mae']:.2f} ({row['count_bias']:+.2f}) | {grade} | {optimal} |")
    write_results(args.out, {"predictions": args.predictions, "gt": args.gt, "images": len(images),
                             "score_threshold": args.threshold,
                             "context": run_context(predictions=args.predictions), "rows": rows})


if __name__ == "__main__":
    run_main(main)
