"""The figures of an evaluation (listed in train/evaluate.py's docstring), computed from a ground
truth and predictions that train.evaluate has read and checked: COCO mAP, one-to-one matching at
IoU 0.5 with precision, recall and F1 per type, the F1-optimal thresholds, count errors and
severity grades, overall and per image group.
"""

import contextlib
import io
import logging
import math

import numpy as np

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



def is_number(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (10**400 in the JSON)
        return False


def resolve_thresholds(score_thresholds, type_names):
    """One float for all types, or a dict type name -> float covering every type."""
    if is_number(score_thresholds):
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
    bad = {k: v for k, v in score_thresholds.items() if not is_number(v)}
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

def evaluate_checked(gt, gt_source, predictions, score_thresholds, model_info=None):
    """Every figure of the report, for a ground truth and predictions that train.evaluate's
    load_ground_truth and load_predictions have checked; gt_source names the ground truth in the
    report. score_thresholds: one number for all types, or a dict type name -> number."""
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
