r"""Evaluate lesion detections against COCO ground truth.

Inputs: a ground-truth file in the project's COCO layout (`OUT/<split>/annotations.json`) and
predictions in the COCO results format ({image_id, category_id, bbox [x, y, w, h], score}).

Computed:
- COCO mAP50 and mAP50:95 (pycocotools, bbox) and AP50 per type.
- Per type precision, recall and F1 at the given score threshold(s): predictions with
  score >= threshold are matched greedily, highest score first, one-to-one, per image and type,
  at IoU >= 0.5. Mean F1 over the types that have ground truth.
- Per type thresholds that maximise F1 on this split, and the same metrics at those thresholds
  (optimistic: chosen and measured on the same images).
- Lesion-count error per image (mean absolute error and mean signed error), total and per type.
- Severity grade (images with "grade"): trouble.severity.grade_from_count of the predicted count,
  accuracy and confusion matrix, next to how often the count rule itself agrees with the label.
- All of the above per image "group", where images carry one.

    python -m train.evaluate --gt data/coco/valid/annotations.json \
        --predictions preds.json --out reports/valid [--score-threshold 0.3 | --thresholds-json T.json]

writes metrics.json, metrics.md and curves.png into --out.
"""

import argparse
import contextlib
import io
import json
import logging
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from train import REPO, file_in_place_of_folder
from trouble.images import BadInput
from trouble.settings import check_input_size, check_nms_iou
from trouble.severity import GRADE_NAMES, grade_from_count

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5
# mmdet's CocoMetric ranks up to 1000 detections per image for bbox mAP; using the same limit
# keeps these numbers equal to the ones in the training log. (COCO's default of 100 would also
# cut real lesions: severe faces carry more than 50.)
MAX_DETECTIONS_PER_IMAGE = 1000
NUM_GRADES = len(GRADE_NAMES)
# Score thresholds at which the F1-vs-threshold curves are sampled for the report.
CURVE_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
OPTIMAL_LABEL = "at F1-optimal thresholds, chosen on this split"


class EvaluationError(ValueError):
    """Bad input to the evaluation; the message names the problem and the file."""


class ThresholdError(EvaluationError):
    """Score thresholds that do not fit the ground truth's types."""


# ---------------------------------------------------------------------------------------------
# Loading and checking the inputs
# ---------------------------------------------------------------------------------------------

def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise EvaluationError(f"cannot read {what} file {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        reason = "nested too deeply to read" if isinstance(e, RecursionError) else e
        raise EvaluationError(f"{what} file {path} is not valid JSON: {reason}") from None


def _is_number(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (10**400 in the JSON)
        return False


def _is_box(value):
    return (isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_number(v) for v in value)
            and value[2] >= 0 and value[3] >= 0)


def load_ground_truth(gt):
    """Read (if a path) and check a COCO ground-truth dict. Returns (gt_dict, source_name).

    The returned dict is a copy with COCO's optional fields filled in (area, iscrowd, info),
    so the caller's dict is never changed.
    """
    source = str(gt) if isinstance(gt, (str, os.PathLike)) else "ground truth (given in memory)"
    if isinstance(gt, (str, os.PathLike)):
        gt = _read_json(gt, "ground truth")
    if not isinstance(gt, dict):
        raise EvaluationError(f"{source}: expected a COCO object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise EvaluationError(f"{source}: missing or malformed '{key}' list")

    categories = []
    for i, cat in enumerate(gt["categories"]):
        if not (isinstance(cat, dict) and isinstance(cat.get("id"), int) and isinstance(cat.get("name"), str)):
            raise EvaluationError(f"{source}: categories[{i}] needs an int 'id' and a str 'name'")
        categories.append(dict(cat))
    if not categories:
        raise EvaluationError(f"{source}: no categories")
    names = [c["name"] for c in categories]
    if len(set(names)) != len(names) or len({c["id"] for c in categories}) != len(categories):
        raise EvaluationError(f"{source}: category ids and names must be unique, got {names}")

    images = []
    for i, img in enumerate(gt["images"]):
        if not (isinstance(img, dict) and isinstance(img.get("id"), int)):
            raise EvaluationError(f"{source}: images[{i}] needs an int 'id'")
        grade = img.get("grade")
        if grade is not None and (not isinstance(grade, int) or not 0 <= grade < NUM_GRADES):
            raise EvaluationError(f"{source}: image id {img['id']} has grade {grade!r}, expected 0..{NUM_GRADES - 1}")
        images.append(dict(img))
    image_ids = [img["id"] for img in images]
    if len(set(image_ids)) != len(image_ids):
        raise EvaluationError(f"{source}: duplicate image ids")

    known_images, known_categories = set(image_ids), {c["id"] for c in categories}
    annotations, crowd_regions, empty_boxes = [], 0, 0
    for i, ann in enumerate(gt["annotations"]):
        if not (isinstance(ann, dict) and ann.get("image_id") in known_images
                and ann.get("category_id") in known_categories and _is_box(ann.get("bbox"))):
            raise EvaluationError(
                f"{source}: annotations[{i}] needs a known image_id, a known category_id and "
                f"bbox [x, y, w, h] with w, h >= 0; got {ann!r}")
        if ann.get("iscrowd") in (1, True):  # as train.data does: the project has no crowd regions, and
            crowd_regions += 1  # mAP would ignore one that recall and the count took for a lesion
            continue
        if ann["bbox"][2] == 0 or ann["bbox"][3] == 0:  # as train.data does: no prediction can match it
            empty_boxes += 1
            continue
        # Numbered 1..N whatever the file says: pycocotools takes an id of 0 for "no match", and two
        # boxes of one id for one (an export may number from 0, or repeat or leave out ids).
        ann = dict(ann, id=len(annotations) + 1)
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
        ann.setdefault("iscrowd", 0)
        annotations.append(ann)

    checked = dict(gt, images=images, annotations=annotations, categories=categories,
                   crowd_regions_left_out=crowd_regions, empty_boxes_left_out=empty_boxes)
    # Some pycocotools versions copy these in loadRes and fail when they are missing.
    checked.setdefault("info", {})
    checked.setdefault("licenses", [])
    return checked, source


def report_beside(predictions_path) -> dict:
    """The evaluation report (metrics.json) beside a predictions.json, as a dict; {} where there is
    none, or it is no JSON object."""
    try:
        report = json.loads(Path(predictions_path).with_name("metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def check_made_on(predictions_path, gt_path):
    """EvaluationError when the evaluation report beside an evaluation's predictions.json (its
    metrics.json) says they were made on another ground truth than gt_path: valid's image ids also
    lie within train's, so they would be scored against the wrong photos without a word. Compared by
    content where the recorded file is at hand, else by split folder and file name (a report made on
    another machine records its paths)."""
    report = report_beside(predictions_path)
    made_on = report["data"].get("gt") if isinstance(report.get("data"), dict) else None
    if not isinstance(made_on, str):
        return  # no evaluation report beside them: nothing to compare
    recorded, given = Path(made_on), Path(gt_path)
    same = (recorded.read_bytes() == given.read_bytes() if recorded.is_file() and given.is_file()
            else recorded.parts[-2:] == given.parts[-2:])
    if not same:
        raise EvaluationError(f"{predictions_path} holds detections made on {made_on} (the metrics.json beside it "
                              f"says so), not on {gt_path}; if that report is wrong, move it away")


def load_predictions(predictions, gt, gt_source="ground truth"):
    """Read (if a path) and check predictions in the COCO results format against `gt`.

    Unknown image or category ids raise EvaluationError naming them. Returns a new list.
    """
    source = str(predictions) if isinstance(predictions, (str, os.PathLike)) else "predictions (given in memory)"
    if isinstance(predictions, (str, os.PathLike)):
        predictions = _read_json(predictions, "predictions")
    if isinstance(predictions, dict) and {"results", "responses"} <= set(predictions):
        raise EvaluationError(f"{source} is the batch CLI's output (handler.predict_folder), whose image ids number "
                              f"the folder's photos, not the ground truth's: run `python -m train.evaluate --model "
                              f"MODEL --gt GT`, which analyses the ground truth's own photos")
    if not isinstance(predictions, list):
        raise EvaluationError(f"{source}: expected a JSON list of {{image_id, category_id, bbox, score}} records")

    checked = []
    for i, pred in enumerate(predictions):
        if not (isinstance(pred, dict) and isinstance(pred.get("image_id"), int)
                and isinstance(pred.get("category_id"), int) and _is_box(pred.get("bbox"))
                and _is_number(pred.get("score")) and 0 <= pred["score"] <= 1):
            raise EvaluationError(
                f"{source}: record {i} needs int image_id, int category_id, bbox [x, y, w, h] "
                f"with w, h >= 0 and a score in [0, 1]; got {pred!r}")
        checked.append({"image_id": pred["image_id"], "category_id": pred["category_id"],
                        "bbox": [float(v) for v in pred["bbox"]], "score": float(pred["score"])})

    known_images = {img["id"] for img in gt["images"]}
    known_categories = {c["id"] for c in gt["categories"]}
    unknown_images = sorted({p["image_id"] for p in checked} - known_images)
    unknown_categories = sorted({p["category_id"] for p in checked} - known_categories)
    if unknown_images:
        raise EvaluationError(
            f"{source}: image ids not in {gt_source}: {_shorten(unknown_images)} "
            f"(are the predictions for another split?)")
    if unknown_categories:
        raise EvaluationError(
            f"{source}: category ids not in {gt_source}: {unknown_categories} "
            f"(known: {sorted(known_categories)})")
    return checked


def _shorten(values, limit=10):
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in all)"


def resolve_thresholds(score_thresholds, type_names):
    """One float for all types, or a dict type name -> float covering every type."""
    if _is_number(score_thresholds):
        return _in_unit_range({name: float(score_thresholds) for name in type_names})
    if not isinstance(score_thresholds, dict):
        raise ThresholdError(f"score thresholds must be a number in [0, 1] or a dict type -> number, got "
                             f"{score_thresholds!r}")
    unknown = sorted(set(score_thresholds) - set(type_names))
    missing = [name for name in type_names if name not in score_thresholds]
    if unknown or missing:
        raise ThresholdError(
            f"score thresholds must name exactly the types {type_names}; "
            f"unknown: {unknown}, missing: {missing}")
    bad = {k: v for k, v in score_thresholds.items() if not _is_number(v)}
    if bad:
        raise ThresholdError(f"score thresholds must be numbers, got {bad}")
    return _in_unit_range({name: float(score_thresholds[name]) for name in type_names})


def _in_unit_range(thresholds: dict) -> dict:
    outside = {name: value for name, value in thresholds.items() if not 0.0 <= value <= 1.0}
    if outside:
        raise ThresholdError(f"score thresholds must be in [0, 1], got {outside}")
    return thresholds


# ---------------------------------------------------------------------------------------------
# COCO mAP (pycocotools)
# ---------------------------------------------------------------------------------------------

def coco_map(gt, predictions, image_ids=None):
    """mAP50, mAP50:95 and AP50 per type, plus the IoU-0.5 precision-recall curve per type.

    Values are None where there is no ground truth to measure against.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = [c["name"] for c in gt["categories"]]
    image_ids = sorted(img["id"] for img in gt["images"]) if image_ids is None else sorted(image_ids)
    selected = set(image_ids)
    n_gt = sum(1 for a in gt["annotations"] if a["image_id"] in selected)
    predictions = [p for p in predictions if p["image_id"] in selected]
    empty = {"mAP50": None, "mAP50_95": None, "AP50_per_type": {name: None for name in names}, "pr_curves": {}}
    if n_gt == 0:
        return empty
    if not predictions:  # pycocotools cannot load an empty result list; nothing found is AP 0,
        # for every type with ground truth here.
        with_gt = {a["category_id"] for a in gt["annotations"] if a["image_id"] in selected}
        empty.update(mAP50=0.0, mAP50_95=0.0,
                     AP50_per_type={c["name"]: 0.0 if c["id"] in with_gt else None for c in gt["categories"]})
        return empty

    # pycocotools prints progress; keep it out of stdout and in the debug log.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        # loadRes writes 'id' and 'area' into the records it gets: give it copies.
        coco_dt = coco_gt.loadRes([dict(p) for p in predictions])
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.params.imgIds = image_ids
        coco_eval.params.maxDets = [1, 10, MAX_DETECTIONS_PER_IMAGE]
        coco_eval.evaluate()
        coco_eval.accumulate()
    logger.debug("pycocotools:\n%s", printed.getvalue())

    # precision[iou, recall, category, area range, max dets]; area "all" is 0, the largest maxDets is -1.
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    iou_50 = int(np.argmin(np.abs(coco_eval.params.iouThrs - 0.5)))

    def mean_valid(values):
        values = values[values > -1]  # -1 marks "no ground truth for this category"
        return float(np.mean(values)) if values.size else None

    result = {"mAP50": mean_valid(precision[iou_50]), "mAP50_95": mean_valid(precision),
              "AP50_per_type": {}, "pr_curves": {}}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        name = next(c["name"] for c in gt["categories"] if c["id"] == cat_id)
        curve = precision[iou_50, :, k]
        result["AP50_per_type"][name] = mean_valid(curve)
        if (curve > -1).any():
            result["pr_curves"][name] = {"recall": [round(float(r), 4) for r in coco_eval.params.recThrs],
                                         "precision": [round(float(p), 4) for p in curve]}
    return result


# ---------------------------------------------------------------------------------------------
# Matching at IoU >= 0.5, precision / recall / F1, counts and grades
# ---------------------------------------------------------------------------------------------

def box_iou(boxes_a, boxes_b):
    """IoU matrix between two arrays of [x, y, w, h] boxes (same convention as pycocotools)."""
    a = np.asarray(boxes_a, dtype=float).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=float).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter_w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    inter_h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = inter_w * inter_h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_predictions(gt, predictions):
    """Greedy one-to-one matching of every prediction, per image and type, highest score first.

    Because matching runs in score order, the predictions kept by any threshold t
    (score >= t) are matched exactly as if the lower ones did not exist: one pass serves
    every threshold. Returns per category id: arrays image_id, score, is_true_positive.
    """
    gt_boxes = {}  # (image_id, category_id) -> list of boxes
    for ann in gt["annotations"]:
        gt_boxes.setdefault((ann["image_id"], ann["category_id"]), []).append(ann["bbox"])
    preds_by_key = {}
    for pred in predictions:
        preds_by_key.setdefault((pred["image_id"], pred["category_id"]), []).append(pred)

    matched = {c["id"]: {"image_id": [], "score": [], "tp": []} for c in gt["categories"]}
    for (image_id, cat_id), preds in preds_by_key.items():
        preds = sorted(preds, key=lambda p: -p["score"])  # stable: ties keep file order
        boxes = gt_boxes.get((image_id, cat_id), [])
        ious = box_iou([p["bbox"] for p in preds], boxes)
        taken = np.zeros(len(boxes), dtype=bool)
        for row, pred in enumerate(preds):
            is_tp = False
            if len(boxes):
                candidates = np.where(taken, -1.0, ious[row])
                best = int(np.argmax(candidates))
                if candidates[best] >= IOU_THRESHOLD:
                    taken[best] = is_tp = True
            out = matched[cat_id]
            out["image_id"].append(image_id)
            out["score"].append(pred["score"])
            out["tp"].append(is_tp)
    return {cat_id: {key: np.asarray(values) for key, values in m.items()} for cat_id, m in matched.items()}


def detection_scores(tp, fp, fn):
    """Precision, recall, F1; None where undefined (no predictions / no ground truth)."""
    n_gt = tp + fn
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / n_gt if n_gt else None
    # F1 is undefined without ground truth: any prediction would be a false positive.
    f1 = 2 * tp / (2 * tp + fp + fn) if n_gt else None
    return precision, recall, f1


def threshold_metrics(gt, predictions, matches, thresholds, image_ids):
    """Everything that depends on the score thresholds, over the images `image_ids`."""
    image_ids = set(image_ids)
    categories = gt["categories"]
    names = [c["name"] for c in categories]

    per_type = {}
    for cat in categories:
        m, t = matches[cat["id"]], thresholds[cat["name"]]
        kept = np.isin(m["image_id"], list(image_ids)) & (m["score"] >= t)
        tp = int(np.sum(m["tp"][kept]))
        fp = int(np.sum(kept)) - tp
        n_gt = sum(1 for a in gt["annotations"] if a["category_id"] == cat["id"] and a["image_id"] in image_ids)
        precision, recall, f1 = detection_scores(tp, fp, n_gt - tp)
        per_type[cat["name"]] = {"threshold": t, "gt": n_gt, "predictions": tp + fp, "tp": tp, "fp": fp,
                                 "fn": n_gt - tp, "precision": precision, "recall": recall, "f1": f1}
    f1_types = [name for name in names if per_type[name]["f1"] is not None]
    mean_f1 = float(np.mean([per_type[n]["f1"] for n in f1_types])) if f1_types else None

    # Lesion counts per image and type: ground truth vs predictions kept by the thresholds.
    cat_index = {c["id"]: k for k, c in enumerate(categories)}
    ordered_ids = sorted(image_ids)
    row = {image_id: r for r, image_id in enumerate(ordered_ids)}
    gt_counts = np.zeros((len(ordered_ids), len(categories)), dtype=int)
    pred_counts = np.zeros_like(gt_counts)
    for ann in gt["annotations"]:
        if ann["image_id"] in row:
            gt_counts[row[ann["image_id"]], cat_index[ann["category_id"]]] += 1
    for pred in predictions:
        cat = categories[cat_index[pred["category_id"]]]
        if pred["image_id"] in row and pred["score"] >= thresholds[cat["name"]]:
            pred_counts[row[pred["image_id"]], cat_index[pred["category_id"]]] += 1

    def count_errors(pred, true):
        if not len(true):
            return {"mae": None, "bias": None}
        diff = pred - true
        return {"mae": float(np.mean(np.abs(diff))), "bias": float(np.mean(diff))}

    count = count_errors(pred_counts.sum(1), gt_counts.sum(1))
    count["per_type"] = {name: count_errors(pred_counts[:, k], gt_counts[:, k]) for k, name in enumerate(names)}
    count["images"] = len(ordered_ids)
    count["by_found_grade"] = count_errors_by_found_grade(pred_counts.sum(1), gt_counts.sum(1))

    # Severity grade from the total count (all types), where images carry a label.
    graded = [(row[img["id"]], img["grade"]) for img in gt["images"]
              if img["id"] in row and img.get("grade") is not None]
    grade = None
    if graded:
        confusion = np.zeros((NUM_GRADES, NUM_GRADES), dtype=int)
        rule_confusion = np.zeros_like(confusion)
        for r, label in graded:
            confusion[label, grade_from_count(int(pred_counts[r].sum()))] += 1
            rule_confusion[label, grade_from_count(int(gt_counts[r].sum()))] += 1
        grade = {"images": len(graded),
                 "accuracy": float(np.trace(confusion) / len(graded)),
                 "confusion": confusion.tolist(),
                 "count_rule_agreement": float(np.trace(rule_confusion) / len(graded)),
                 "count_rule_confusion": rule_confusion.tolist()}

    return {"thresholds": dict(thresholds), "per_type": per_type, "mean_f1": mean_f1,
            "mean_f1_types": f1_types, "count": count, "grade": grade}


def count_errors_by_found_grade(found, marked) -> list:
    """Per grade of the found count (0..3): how far the marked count lay from it on the images where
    the model's count fell in that grade, which is what a user holding one count wants to know (the
    error grows with the count: one average error is too wide for a mild photo and too narrow for a
    severe one). Each: images, mae, and the 10th and 90th percentiles of marked - found; None where
    no image's count fell in the grade."""
    found, marked = np.asarray(found), np.asarray(marked)
    grades = np.array([grade_from_count(int(n)) for n in found], dtype=int)
    rows = []
    for grade in range(NUM_GRADES):
        diff = (marked - found)[grades == grade]
        rows.append({"images": len(diff), "mae": float(np.mean(np.abs(diff))),
                     "marked_minus_found_p10": float(np.percentile(diff, 10)),
                     "marked_minus_found_p90": float(np.percentile(diff, 90))} if len(diff) else None)
    return rows


def f1_optimal_thresholds(gt, matches, fallback):
    """Per type, the score threshold that maximises F1 on these images, and the F1 curve.

    The threshold sits halfway between the lowest kept score and the highest dropped one,
    so it selects the same predictions whether a consumer keeps score >= t or score > t.
    Types without ground truth, or where no threshold finds anything, keep `fallback`.
    """
    chosen, notes, curves = {}, [], {}
    for cat in gt["categories"]:
        name, m = cat["name"], matches[cat["id"]]
        n_gt = sum(1 for a in gt["annotations"] if a["category_id"] == cat["id"])
        order = np.argsort(-m["score"], kind="stable")
        scores, tp = m["score"][order], m["tp"][order].astype(int)
        cum_tp = np.cumsum(tp)
        kept = np.arange(1, len(scores) + 1)
        f1 = 2 * cum_tp / (kept + n_gt) if n_gt else np.zeros(len(scores))
        # Only cut between different scores: tied predictions are kept or dropped together.
        last_of_tie = np.append(scores[1:] != scores[:-1], True) if len(scores) else np.zeros(0, bool)
        candidates = np.flatnonzero(last_of_tie)

        curve = []
        for t in CURVE_THRESHOLDS:
            n_kept = int(np.sum(scores >= t))
            curve.append(round(float(2 * cum_tp[n_kept - 1] / (n_kept + n_gt)), 4) if n_gt and n_kept else
                         (0.0 if n_gt else None))
        curves[name] = curve

        if not n_gt or not candidates.size or f1[candidates].max() <= 0:
            chosen[name] = fallback[name]
            reason = "no ground truth" if not n_gt else "no true positive at any threshold"
            notes.append(f"F1-optimal threshold for '{name}': {reason}; kept the given threshold {fallback[name]}")
            continue
        best = candidates[int(np.argmax(f1[candidates]))]  # first maximum = highest threshold
        lowest_kept = scores[best]
        highest_dropped = scores[best + 1] if best + 1 < len(scores) else 0.0
        halfway = float((lowest_kept + highest_dropped) / 2)
        rounded = round(halfway, 6)  # 0.10745, not 0.10744999999999999; unless that would cross a score
        chosen[name] = rounded if highest_dropped < rounded < lowest_kept else halfway
    return chosen, curves, notes


# ---------------------------------------------------------------------------------------------
# The whole evaluation
# ---------------------------------------------------------------------------------------------

def evaluate(gt, predictions, score_thresholds=0.3, model_info=None):
    """Compute every metric of the report. See the module docstring.

    gt: path to a COCO annotations.json, or the loaded dict. predictions: list of COCO result
    records, or a path to a JSON file holding one. score_thresholds: one number for all types,
    or a dict type name -> number. model_info: what produced the predictions (config, weights,
    "pretrained": ...), copied to the top of the report.
    """
    gt, gt_source = load_ground_truth(gt)
    predictions = load_predictions(predictions, gt, gt_source)
    return evaluate_checked(gt, gt_source, predictions, score_thresholds, model_info)


def evaluate_checked(gt, gt_source, predictions, score_thresholds, model_info=None):
    """evaluate() of a ground truth and predictions that load_ground_truth and load_predictions
    have already checked; gt_source names the ground truth in the report."""
    names = [c["name"] for c in gt["categories"]]
    thresholds = resolve_thresholds(score_thresholds, names)
    all_image_ids = [img["id"] for img in gt["images"]]
    notes = []

    coco = coco_map(gt, predictions)
    matches = match_predictions(gt, predictions)
    at_thresholds = threshold_metrics(gt, predictions, matches, thresholds, all_image_ids)
    optimal, f1_curves, optimal_notes = f1_optimal_thresholds(gt, matches, thresholds)
    notes += optimal_notes
    if gt.get("crowd_regions_left_out"):
        notes.append(f"{gt['crowd_regions_left_out']} crowd regions (iscrowd) of the ground truth are left out of "
                     f"every figure, as train.data leaves them out of an import")
    if gt.get("empty_boxes_left_out"):
        notes.append(f"{gt['empty_boxes_left_out']} boxes of zero width or height in the ground truth are left out of "
                     f"every figure (no prediction could match one), as train.data leaves them out of an import")
    at_optimal = threshold_metrics(gt, predictions, matches, optimal, all_image_ids)
    at_optimal["label"] = OPTIMAL_LABEL

    for name in names:
        if at_thresholds["per_type"][name]["gt"] == 0:
            notes.append(f"type '{name}' has no ground-truth boxes in this split: its recall, F1 and AP are "
                         f"undefined (null) and it is left out of mean F1")

    groups = None
    if any("group" in img for img in gt["images"]):
        groups = {}
        group_names = sorted({str(img.get("group", "(no group)")) for img in gt["images"]})
        for group in group_names:
            ids = [img["id"] for img in gt["images"] if str(img.get("group", "(no group)")) == group]
            group_coco = coco_map(gt, predictions, ids)
            groups[group] = {"images": len(ids),
                             "coco": {k: v for k, v in group_coco.items() if k != "pr_curves"},
                             "at_thresholds": threshold_metrics(gt, predictions, matches, thresholds, ids)}

    if model_info is None:
        model_info = {"note": "not given by the caller"}
        notes.append("the caller did not say which model produced these predictions")

    return {
        "model": dict(model_info),
        "data": {"gt": gt_source, "images": len(gt["images"]), "gt_boxes": len(gt["annotations"]),
                 "predictions": len(predictions), "types": names,
                 "graded_images": sum(1 for img in gt["images"] if img.get("grade") is not None)},
        "settings": {"iou_threshold": IOU_THRESHOLD, "score_rule": "a prediction is kept when score >= threshold",
                     "matching": "greedy one-to-one per image and type, highest score first",
                     "max_detections_per_image_for_mAP": MAX_DETECTIONS_PER_IMAGE},
        "summary": {"mAP50": coco["mAP50"], "mean_f1": at_thresholds["mean_f1"],
                    "f1": {name: at_thresholds["per_type"][name]["f1"] for name in names}},
        "coco": {k: v for k, v in coco.items() if k != "pr_curves"},
        "at_thresholds": at_thresholds,
        "f1_optimal_thresholds": optimal,
        "at_f1_optimal_thresholds": at_optimal,
        "groups": groups,
        "curves": {"pr_iou50": coco["pr_curves"],
                   "f1_vs_threshold": {"thresholds": [float(t) for t in CURVE_THRESHOLDS], **f1_curves}},
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------
# Report files
# ---------------------------------------------------------------------------------------------

def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _headline_table(coco, block, names):
    header = ["mAP50", "mean F1"] + [f"F1 {name}" for name in names]
    return _table(header, [[coco["mAP50"], block["mean_f1"]] + [block["per_type"][n]["f1"] for n in names]])


def _per_type_table(block, ap50, names):
    header = ["type", "threshold", "GT boxes", "predictions", "TP", "FP", "FN", "precision", "recall", "F1", "AP50"]
    rows = [[n, block["thresholds"][n]] + [block["per_type"][n][k] for k in
            ("gt", "predictions", "tp", "fp", "fn", "precision", "recall", "f1")] + [ap50.get(n)] for n in names]
    return _table(header, rows)


def _count_table(block, names):
    count = block["count"]
    rows = [["all types", count["mae"], count["bias"]]]
    rows += [[n, count["per_type"][n]["mae"], count["per_type"][n]["bias"]] for n in names]
    return _table(["lesion count per image", "mean abs error", "mean signed error (pred - GT)"], rows)


def _model_value(key, value):
    """A model setting as the report shows it: switches as on/off ("sliced": False, or "false" as the
    command line gave it, and a tta of None, the model's own: off in every archive that has none)."""
    if key == "tta" and value is None:
        return "off"
    if isinstance(value, bool) or value in ("true", "false"):
        return "on" if value in (True, "true") else "off"
    return value


def _count_by_grade_table(block):
    if not block["count"].get("by_found_grade"):  # a report made before these figures
        return ["(not in this report)"]
    rows = [[f"{k} {GRADE_NAMES[k]}", row["images"], row["mae"], row["marked_minus_found_p10"],
             row["marked_minus_found_p90"]] for k, row in enumerate(block["count"]["by_found_grade"]) if row]
    return _table(["grade of the found count", "images", "mean abs error", "marked - found, 10th percentile",
                   "90th percentile"], rows)


def _grade_lines(grade):
    if grade is None:
        return ["No image carries a severity grade."]
    lines = [f"Grade accuracy from the predicted count: **{_fmt(grade['accuracy'])}** over {grade['images']} images; "
             f"the count rule on ground-truth boxes agrees with the label on {_fmt(grade['count_rule_agreement'])} "
             f"(what counting every lesion exactly would score).", ""]
    header = ["label \\ predicted"] + [f"{k} {name}" for k, name in enumerate(GRADE_NAMES)]
    lines += _table(header, [[f"{k} {GRADE_NAMES[k]}"] + row for k, row in enumerate(grade["confusion"])])
    return lines


def markdown_report(metrics):
    names = metrics["data"]["types"]
    model = metrics["model"]
    lines = ["# Lesion detection evaluation", "", "## Model", ""]
    lines += [f"- **{key}**: {_model_value(key, value)}" for key, value in model.items()]
    if "pretrained" not in model:
        lines.append("- **pretrained**: not stated by the caller")
    data = metrics["data"]
    lines += ["", f"Ground truth: `{data['gt']}`: {data['images']} images, {data['gt_boxes']} boxes, "
                  f"{data['predictions']} predictions, types: {', '.join(names)}.", "",
              f"Matching: {metrics['settings']['matching']}, IoU >= {metrics['settings']['iou_threshold']}; "
              f"{metrics['settings']['score_rule']}. mAP: pycocotools, ranking up to "
              f"{metrics['settings']['max_detections_per_image_for_mAP']} detections per image (as mmdet does; "
              f"COCO's default of 100 would cut real lesions on a severe face).", ""]

    block = metrics["at_thresholds"]
    thresholds = sorted(set(block["thresholds"].values()))
    shown = thresholds[0] if len(thresholds) == 1 else "per type (see below)"
    lines += [f"## Results at score threshold {shown}", ""]
    if block.get("chosen_on_these_photos"):
        lines += ["Optimistic: these are the model's own thresholds, chosen on these images (within 0.01 of the "
                  "F1-optimal ones of the evaluation it was archived with); mAP50 does not depend on them.", ""]
    lines += _headline_table(metrics["coco"], block, names)
    lines += ["", f"mAP50:95: {_fmt(metrics['coco']['mAP50_95'])}. Mean F1 over: {', '.join(block['mean_f1_types']) or 'no type (none has ground truth)'}.", ""]
    lines += _per_type_table(block, metrics["coco"]["AP50_per_type"], names) + [""]
    lines += _count_table(block, names) + [""]
    lines += ["The count error by the grade of the count found (all types): how far the marked count lay "
              "from the model's on the images where its count fell in that grade.", ""]
    lines += _count_by_grade_table(block) + [""]
    lines += _grade_lines(block["grade"]) + [""]

    optimal = metrics["at_f1_optimal_thresholds"]
    lines += [f"## Results {OPTIMAL_LABEL}", "",
              "Optimistic: the thresholds were picked and measured on the same images. "
              "Save them with the model; judge them on another split.", ""]
    lines += _headline_table(metrics["coco"], optimal, names) + [""]
    lines += _per_type_table(optimal, metrics["coco"]["AP50_per_type"], names) + [""]
    lines += _count_table(optimal, names) + [""]
    lines += _grade_lines(optimal["grade"]) + [""]

    if metrics["groups"]:
        lines += ["## Per image group (at the given thresholds)", ""]
        header = ["group", "images", "mAP50", "mean F1"] + [f"F1 {n}" for n in names] + [
            "count MAE", "count bias", "grade accuracy", "count rule agreement"]
        rows = []
        for group, g in metrics["groups"].items():
            b = g["at_thresholds"]
            rows.append([group, g["images"], g["coco"]["mAP50"], b["mean_f1"]]
                        + [b["per_type"][n]["f1"] for n in names]
                        + [b["count"]["mae"], b["count"]["bias"],
                           b["grade"]["accuracy"] if b["grade"] else None,
                           b["grade"]["count_rule_agreement"] if b["grade"] else None])
        lines += _table(header, rows) + [""]

    if metrics["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in metrics["notes"]] + [""]
    return "\n".join(lines)


def write_curves(metrics, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = metrics["data"]["types"]
    fig, (ax_pr, ax_f1) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in names:
        pr = metrics["curves"]["pr_iou50"].get(name)
        if pr:
            ap = metrics["coco"]["AP50_per_type"][name]
            # COCO's interpolated precision is 0 past the highest recall reached: end the line there.
            reached = max((k for k, p in enumerate(pr["precision"]) if p > 0), default=-1) + 1
            ax_pr.plot(pr["recall"][:reached], pr["precision"][:reached], label=f"{name} (AP50 {_fmt(ap)})")
        f1 = metrics["curves"]["f1_vs_threshold"][name]
        if any(v is not None for v in f1):
            ax_f1.plot(metrics["curves"]["f1_vs_threshold"]["thresholds"],
                       [np.nan if v is None else v for v in f1], label=name)
    ax_pr.set(title="Precision-recall at IoU 0.5", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax_f1.set(title="F1 vs score threshold", xlabel="score threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (ax_pr, ax_f1):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    pretrained = metrics["model"].get("pretrained", "not stated")
    fig.suptitle(f"pretrained: {pretrained}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(metrics, out_dir):
    """Write metrics.json, metrics.md, curves.png and thresholds.json (the F1-optimal ones, for
    train.archive) into out_dir; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in REPORT_FILES if name != "predictions.json"}
    with open(paths["metrics.json"], "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    with open(paths["metrics.md"], "w", encoding="utf-8") as f:
        f.write(markdown_report(metrics))
    write_curves(metrics, paths["curves.png"])
    with open(paths["thresholds.json"], "w", encoding="utf-8") as f:
        json.dump(metrics["f1_optimal_thresholds"], f, indent=2)
    return paths


def thresholds_of_the_run(predictions_path) -> tuple:
    """The thresholds to score saved predictions at when none are given → (thresholds, note): those
    of the report beside them (the model run that saved them, at its model's own thresholds), else
    0.3 for every type. Scoring a model's predictions.json again gave other figures than its run,
    at 0.3 instead of the model's thresholds."""
    at_thresholds = report_beside(predictions_path).get("at_thresholds")
    thresholds = at_thresholds.get("thresholds") if isinstance(at_thresholds, dict) else None
    if thresholds is None:
        return 0.3, "no --score-threshold or --thresholds-json: scored at 0.3 for every type"
    beside = Path(predictions_path).with_name("metrics.json")
    return thresholds, f"scored at the thresholds of the report beside the predictions ({beside}): {thresholds}"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def load_thresholds_json(path_or_json):
    """A dict type name -> threshold, given as JSON text ('{"acne": 0.23}') or as a file: one such
    dict, or a metrics.json whose F1-optimal thresholds to reuse."""
    text = path_or_json.strip()
    # JSON text, not a file name: an object, or (a mistake named as such) a list or a number.
    if text.startswith(("{", "[")) or re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?", text):
        try:
            data = json.loads(path_or_json)
        except (json.JSONDecodeError, RecursionError) as e:
            raise EvaluationError(f"thresholds {path_or_json!r} are not valid JSON: {e}") from None
    else:
        data = _read_json(path_or_json, "thresholds")
    if isinstance(data, dict) and "f1_optimal_thresholds" in data:
        data = data["f1_optimal_thresholds"]
    if not isinstance(data, dict):
        raise EvaluationError(f"thresholds {path_or_json}: expected {{type name: threshold}}, e.g. '{{\"acne\": 0.23}}'")
    return data


# ---------------------------------------------------------------------------------------------
# Running a model first (through the shared inference core, as the server does)
# ---------------------------------------------------------------------------------------------

# What a report writes into --out (predictions.json only when a model is run).
REPORT_FILES = ("metrics.json", "metrics.md", "curves.png", "thresholds.json", "predictions.json")
# Detections down to this score are kept for the curves and the threshold search.
EVAL_SCORE_FLOOR = 0.05


def spread_sample(images: list, limit: int | None) -> list:
    """`limit` images spread evenly over the list (every k-th), or all of them.

    Evenly spaced rather than the first N: data sets are often sorted (ACNE04's valid split by
    grade), and the first N would all come from one group."""
    if not limit or limit >= len(images):
        return list(images)
    return [images[int(i * len(images) / limit)] for i in range(limit)]


def sample_ground_truth(gt: dict, limit: int | None) -> dict:
    """The ground truth of `limit` images spread evenly over it (see spread_sample), or all of it."""
    images = spread_sample(gt["images"], limit)
    if len(images) == len(gt["images"]):
        return gt
    kept = {image["id"] for image in images}
    return dict(gt, images=images, annotations=[a for a in gt["annotations"] if a["image_id"] in kept])


def predict_ground_truth_images(detector, gt_path, limit=None, sliced=None, slice_size=None, tta=None,
                                framing=None, gt=None):
    """Run the detector on the images of a ground-truth file (`limit` of them spread evenly, or
    all); return (COCO results, the ground truth of the images read, the images that could not be).
    gt: that file as load_ground_truth returned it, where the caller has read it already."""
    from trouble.batch import predict_images

    if gt is None:
        gt = load_ground_truth(gt_path)[0]
    gt = sample_ground_truth(gt, limit)
    images = gt["images"]
    no_file = [i for i, image in enumerate(images) if not isinstance(image.get("file_name"), str)]
    if no_file:
        raise EvaluationError(f"{gt_path}: images[{no_file[0]}] has no 'file_name' to run the model on")
    category_ids = {c["name"]: c["id"] for c in gt["categories"]}
    missing = [name for name in detector.classes if name not in category_ids]
    if missing:
        raise EvaluationError(f"the model's types {missing} are not categories of {gt_path}")
    folder = Path(gt_path).parent
    print(f"[evaluate] running the model on {len(images)} images of {gt_path}", flush=True)
    predictions, responses = predict_images(detector, [(im["id"], folder / im["file_name"]) for im in images],
                                            category_ids, EVAL_SCORE_FLOOR, sliced, slice_size, tta=tta,
                                            framing=framing)
    # A photo that could not be read has no answer, not an empty one: scoring it would count its
    # lesions as missed. It is left out, and the report says so. A model that fails, or refuses a
    # photo at these settings (too many model passes), stops the run: leaving those photos out would
    # flatter it.
    failed = [answer for answer in responses.values()
              if answer.get("code") in ("model_failed", "internal_error", "too_much_work")]
    if failed:
        raise EvaluationError(f"the model failed on {failed[0]['file_name']} ({failed[0]['error']}); "
                              f"{len(failed)} photo(s) in all")
    unread_ids = {image_id for image_id, answer in responses.items() if "error" in answer}
    if images and len(unread_ids) == len(images):
        raise EvaluationError(f"none of the {len(images)} images of {gt_path} could be read")
    if unread_ids:
        gt = dict(gt, images=[im for im in images if im["id"] not in unread_ids],
                  annotations=[a for a in gt["annotations"] if a["image_id"] not in unread_ids])
    unread = [f"{responses[i]['file_name']}: {responses[i]['error']}" for i in sorted(unread_ids)]
    return predictions, gt, unread


def evaluate_model(model, gt_path, out_dir, limit=None, sliced=None, slice_size=None, from_work_dir=False,
                   input_size=None, score_thresholds=None, nms_iou=None, tta=None, framing=None, gt=None):
    """Evaluate a .mar, a model folder or a training work dir; saves thresholds.json and the
    model's predictions.json (COCO results) beside the report. score_thresholds: None for the
    model's own (its test-time augmentation's with tta), else one number or {type: threshold}.
    tta: "true"/"false", framing: "face"/"none"; None for the model's setting. gt: the file at
    gt_path as load_ground_truth returned it, where the caller has read it already."""
    import tempfile

    from trouble.inference import TroubleDetector

    with tempfile.TemporaryDirectory(prefix="trouble-eval-") as staged:
        if from_work_dir:
            from train.archive import ArchiveError, stage_model_dir

            try:
                model_dir = stage_model_dir(Path(model), Path(staged), with_evaluation=False)
            except ArchiveError as error:  # not a finished work dir, or its checkpoint is gone
                raise EvaluationError(str(error)) from None
        else:
            model_dir = model
        try:
            detector = TroubleDetector.from_path(model_dir, input_size=input_size, nms_iou=nms_iou)
        except (FileNotFoundError, ValueError) as error:  # no model there, or not a model
            raise EvaluationError(str(error)) from None
        # The model's thresholds for the passes asked for (test-time augmentation has its own).
        model_thresholds, slicing, framing, tta_on = detector.resolve_request(sliced=sliced, slice_size=slice_size,
                                                                              framing=framing, tta=tta)
        predictions, gt, unread = predict_ground_truth_images(detector, gt_path, limit, sliced, slice_size, tta,
                                                              framing, gt)
    # The model's own thresholds and earlier validation are not what this report is about.
    info = {"model": str(model),
            **{k: v for k, v in detector.model_info().items()
               if k not in ("score_thresholds", "tta_score_thresholds", "validation")},
            "sliced": slicing.enabled,
            "input_size": detector.input_size, "nms_iou": detector.nms_iou, "framing": framing,
            "brighten_dark": detector.settings.brighten_dark,
            "tta": {"sizes": detector.settings.tta.sizes, "flip": detector.settings.tta.flip,
                    "fuse_iou": detector.settings.tta.fuse_iou} if tta_on else None}
    if from_work_dir:
        info["trained"] = json.loads((Path(model) / "run_meta.json").read_text())
    thresholds = model_thresholds if score_thresholds is None else score_thresholds
    checked = load_predictions(predictions, gt, str(gt_path))  # the model's answers, checked as saved ones are
    metrics = evaluate_checked(gt, str(gt_path), checked, thresholds, info)
    validation = detector.model_info().get("validation") or {}
    if (score_thresholds is None and validation.get("thresholds_chosen_on_these_photos")
            and bool(validation.get("tta")) == tta_on and same_file(validation.get("data"), gt_path)):
        # The model's thresholds are within 0.01 of the F1-optimal ones of the evaluation it was
        # archived with, on these photos (train.archive's validation record).
        metrics["at_thresholds"]["chosen_on_these_photos"] = True
    if unread:
        metrics["data"]["unreadable_images"] = unread
        metrics["notes"].append(f"{len(unread)} image(s) could not be read and are left out of every figure: "
                                f"{'; '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}")
    paths = write_report(metrics, out_dir)
    # Running the model is the slow part: keep its output so that other thresholds or a subset
    # can be scored again with --predictions, in seconds.
    predictions_path = os.path.join(out_dir, "predictions.json")
    with open(predictions_path, "w", encoding="utf-8") as f:
        json.dump(predictions, f)
    paths["predictions.json"] = predictions_path
    return metrics, paths


def same_file(recorded, path) -> bool:
    """Whether a path recorded in an archive (None, relative to where it was made, usually the
    repository, or absolute) names the file at `path`."""
    if recorded is None:
        return False
    for candidate in (Path(recorded), REPO / recorded):
        try:
            if os.path.samefile(candidate, path):
                return True
        except OSError:  # not here (an archive made on another machine)
            continue
    return False


def evaluate_work_dir(work_dir, gt_path, out_dir, limit=None):
    """The evaluation `make train` runs at its end; prints the headline table."""
    metrics, paths = evaluate_model(work_dir, gt_path, out_dir, limit=limit, from_work_dir=True)
    print("\n".join(_headline_table(metrics["coco"], metrics["at_thresholds"], metrics["data"]["types"])))
    print("[evaluate] wrote", ", ".join(str(p) for p in paths.values()), flush=True)
    return metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, help="COCO ground truth, e.g. data/coco/valid/annotations.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", help="JSON list of COCO results {image_id, category_id, bbox, score}")
    source.add_argument("--model", help="a .mar or model folder: run it on the ground truth's images first")
    source.add_argument("--work-dir", help="a training work dir: run its best checkpoint on the images first")
    parser.add_argument("--sliced", choices=["true", "false"], help="with --model/--work-dir: SAHI slicing on or off "
                                                                     "(default: the model's setting)")
    parser.add_argument("--slice-size", type=int, help="with --model/--work-dir: SAHI slice size")
    parser.add_argument("--framing", choices=["face", "none"], help="with --model/--work-dir: crop photos to the "
                                                                    "face when it is small in them, or never "
                                                                    "(default: the model's setting)")
    parser.add_argument("--tta", choices=["true", "false"], help="with --model/--work-dir: test-time augmentation "
                                                                 "(default: the model's setting)")
    parser.add_argument("--limit", type=int, help="only N images, spread evenly over the file (with --predictions: "
                                                  "the same N a --limit run of the model scored)")
    parser.add_argument("--input-size", type=int, help="with --model/--work-dir: resize images (and slices) to this "
                                                       "side for the model (default: the model's setting)")
    parser.add_argument("--nms-iou", type=float, help="with --model/--work-dir: the model's NMS IoU threshold "
                                                      "(default: the model's setting)")
    parser.add_argument("--out", required=True, help="folder for metrics.json, metrics.md, curves.png "
                                                     "(and, with --model/--work-dir, predictions.json)")
    thresholds = parser.add_mutually_exclusive_group()
    thresholds.add_argument("--score-threshold", type=float,
                            help="one threshold for every type (default: a model's own; for --predictions, those of "
                                 "the report beside them, else 0.3)")
    thresholds.add_argument("--thresholds-json", help="{type: threshold} as JSON text (e.g. '{\"acne\": 0.23}') "
                                                     "or a file, or a metrics.json whose F1-optimal thresholds to use")
    parser.add_argument("--model-info", help="JSON file describing the model (config, checkpoint, pretrained); shown at the top of the report")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if message := file_in_place_of_folder("--out", args.out, "a folder for the report"):
        parser.error(message)
    # Refused rather than ignored: saved predictions are scored as they are, and a model describes itself.
    run_options = [flag for flag, value in (("--sliced", args.sliced), ("--slice-size", args.slice_size),
                                            ("--tta", args.tta), ("--framing", args.framing),
                                            ("--input-size", args.input_size),
                                            ("--nms-iou", args.nms_iou)) if value is not None]
    if args.predictions and run_options:
        parser.error(f"{', '.join(run_options)}: only with --model or --work-dir (saved predictions are not run "
                     f"again)")
    if args.predictions and Path(args.out).resolve() == Path(args.predictions).resolve().parent:
        # The model run's own report sits there: replaced, the run's figures and thresholds are gone.
        parser.error(f"--out {args.out} is the folder of --predictions, whose report (metrics.json) is the model "
                     f"run's: give another --out")
    # An input that is one of the files --out is about to write was replaced by it (a thresholds.json
    # given back to the run that wrote it, into the same folder).
    written = {(Path(args.out) / name).resolve() for name in REPORT_FILES}
    for flag, path in (("--gt", args.gt), ("--thresholds-json", args.thresholds_json), ("--model-info", args.model_info),
                       ("--predictions", args.predictions)):
        if path and not path.lstrip().startswith("{") and Path(path).resolve() in written:
            parser.error(f"{flag} {path} is a file --out {args.out} would write: give another --out")
    if args.model_info and not args.predictions:
        parser.error("--model-info: only with --predictions (with --model or --work-dir the report describes "
                     "the model itself)")
    try:
        if args.input_size is not None:
            check_input_size(args.input_size)
        if args.nms_iou is not None:
            check_nms_iou(args.nms_iou)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        score_thresholds = load_thresholds_json(args.thresholds_json) if args.thresholds_json else args.score_threshold
        model_info = _read_json(args.model_info, "model info") if args.model_info else {}
        if not isinstance(model_info, dict):
            raise EvaluationError(f"model info file {args.model_info}: expected a JSON object")

        if args.predictions:
            model_info.setdefault("predictions_file", args.predictions)
            check_made_on(args.predictions, args.gt)
            gt = load_ground_truth(args.gt)[0]
            predictions = load_predictions(args.predictions, gt, args.gt)
            if args.limit:  # the images a --limit run scored: predictions of the others are left out
                gt = sample_ground_truth(gt, args.limit)
                kept = {image["id"] for image in gt["images"]}
                predictions = [p for p in predictions if p["image_id"] in kept]
            if score_thresholds is None:
                score_thresholds, note = thresholds_of_the_run(args.predictions)
                print("note:", note)
            metrics = evaluate_checked(gt, args.gt, predictions, score_thresholds, model_info)
            paths = write_report(metrics, args.out)
        else:
            gt = None  # evaluate_model reads it (after loading the model) unless the thresholds need it first
            if score_thresholds is not None:  # checked before the model runs over every photo, not after
                gt = load_ground_truth(args.gt)[0]
                resolve_thresholds(score_thresholds, [category["name"] for category in gt["categories"]])
            metrics, paths = evaluate_model(args.model or args.work_dir, args.gt, args.out, limit=args.limit,
                                            sliced=args.sliced, slice_size=args.slice_size,
                                            from_work_dir=bool(args.work_dir), input_size=args.input_size,
                                            score_thresholds=score_thresholds, nms_iou=args.nms_iou, tta=args.tta,
                                            framing=args.framing, gt=gt)
    except ThresholdError as e:
        source = f"--thresholds-json {args.thresholds_json}: " if args.thresholds_json else ""  # a file or JSON text
        print(f"error: {source}{e}", file=sys.stderr)
        return 2
    except (EvaluationError, BadInput) as e:  # BadInput: an option the model refuses, e.g. --slice-size
        print(f"error: {e}", file=sys.stderr)
        return 2

    names = metrics["data"]["types"]
    print("\n".join(_headline_table(metrics["coco"], metrics["at_thresholds"], names)))
    print("F1-optimal thresholds (chosen on this split):", json.dumps(metrics["f1_optimal_thresholds"]))
    for note in metrics["notes"]:
        print("note:", note)
    print("wrote", ", ".join(paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
