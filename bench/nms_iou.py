"""Choose the model's NMS IoU threshold from an evaluation's saved detections (no second model run).

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
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path

import torch
from mmcv.ops import nms

from bench.arguments import (at_least, existing_path, list_of, output_file, parse_checked, run_main, score,
                             unit_fraction)
from train.evaluate import evaluate, load_ground_truth, sample_ground_truth


def stricter_nms(predictions: list, iou: float) -> list:
    """Greedy NMS at `iou` within each (image, type) group of COCO results."""
    groups = defaultdict(list)
    for prediction in predictions:
        groups[prediction["image_id"], prediction["category_id"]].append(prediction)
    kept = []
    for group in groups.values():
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (p["bbox"] for p in group)], dtype=torch.float32)
        _, keep = nms(boxes, torch.tensor([p["score"] for p in group], dtype=torch.float32), iou)
        kept += [group[index] for index in keep.tolist()]
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, type=existing_path, help="an evaluation's predictions.json")
    parser.add_argument("--gt", required=True, type=existing_path, help="the ground truth it was run on")
    parser.add_argument("--limit", type=at_least(1),
                        help="the --limit the evaluation used (the same images are scored)")
    parser.add_argument("--ious", default=[0.6, 0.55, 0.5, 0.45, 0.4], type=list_of(unit_fraction),
                        help="comma-separated IoU thresholds")
    parser.add_argument("--threshold", type=score, default=0.3, help="score threshold for F1, counts and grades")
    parser.add_argument("--out", required=True, type=output_file, help="JSON file for the rows")
    args = parse_checked(parser, argv)

    gt = sample_ground_truth(load_ground_truth(args.gt)[0], args.limit)
    images = gt["images"]
    kept_ids = {image["id"] for image in images}
    predictions = [p for p in json.loads(Path(args.predictions).read_text()) if p["image_id"] in kept_ids]
    rows = []
    for iou in args.ious:
        kept = stricter_nms(predictions, iou)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its own tables
            metrics = evaluate(gt, kept, args.threshold)
        block = metrics["at_thresholds"]
        rows.append({"nms_iou": iou, "detections": len(kept), "mAP50": metrics["coco"]["mAP50"],
                     "mean_f1": block["mean_f1"], "count_mae": block["count"]["mae"],
                     "count_bias": block["count"]["bias"], "grade_accuracy": (block["grade"] or {}).get("accuracy"),
                     "f1_optimal_thresholds": metrics["f1_optimal_thresholds"]})

    print(f"NMS IoU on {len(images)} images of {args.gt} (score threshold {args.threshold}; stricter NMS applied "
          f"to {args.predictions})")
    print("| NMS IoU | detections | mAP50 | mean F1 | count MAE (bias) | grade acc. | F1-optimal threshold |\n"
          "|---|---|---|---|---|---|---|")
    for row in rows:
        grade = "n/a" if row["grade_accuracy"] is None else f"{row['grade_accuracy']:.3f}"
        optimal = ", ".join(f"{value:.3f}" for value in row["f1_optimal_thresholds"].values())
        print(f"| {row['nms_iou']} | {row['detections']} | {row['mAP50']:.4f} | {row['mean_f1']:.3f} | "
              f"{row['count_mae']:.2f} ({row['count_bias']:+.2f}) | {grade} | {optimal} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"predictions": args.predictions, "gt": args.gt, "images": len(images),
                                          "score_threshold": args.threshold, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main)
