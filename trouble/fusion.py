"""Weighted box fusion: several passes' detections of one image → one set of boxes.

Used by test-time augmentation (trouble.settings.TestTimeAugmentation). Each pass has been
through the model's own NMS already; fusing boxes that several passes agree on, instead of
keeping the highest one as a second NMS would, ranks agreed lesions above those one pass found
(Solovyev et al., "Weighted boxes fusion", 2019). On 150 ACNE04 train photos, the demo model's
4 passes fused this way scored mAP50 0.273, pooled under NMS 0.259, one pass 0.253
(docs/FIGURES.md, "Test-time augmentation").
"""
from __future__ import annotations

import numpy as np


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of N xyxy boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def fuse_passes(passes: list, iou_threshold: float) -> tuple:
    """passes: one (boxes Nx4 xyxy, scores N, labels N) per pass, all of the same image.

    Boxes of one label are taken highest score first; each joins the cluster whose fused box it
    overlaps most (IoU >= iou_threshold) among those that hold no box of its own pass yet, or
    starts a cluster. A cluster's box is the score-weighted mean of its boxes; its score is the
    sum of its scores over the number of passes, so a lesion one pass missed counts 0 there.
    Fused boxes move as boxes join them, and a box cannot join a cluster that holds its own pass's:
    two clusters can end up overlapping as much as one pass's NMS forbids (6 pairs in 494 boxes on
    14 ACNE04 photos, two counts for one lesion). Of such a pair, the lower-scored cluster is dropped.
    Returns (boxes, scores, labels) in the same form, highest score first.
    """
    n_passes = len(passes)
    fused_boxes, fused_scores, fused_labels = [], [], []
    labels = set().union(*(set(np.asarray(p[2]).tolist()) for p in passes))
    for label in sorted(labels):
        entries = [(float(score), np.asarray(box, dtype=np.float64), index)
                   for index, (boxes, scores, pass_labels) in enumerate(passes)
                   for box, score, box_label in zip(boxes, scores, pass_labels) if box_label == label]
        entries.sort(key=lambda entry: -entry[0])
        clusters = []  # each: {"box": fused xyxy, "members": [(score, box, pass index)]}
        for score, box, index in entries:
            chosen = None
            if clusters:
                overlaps = box_iou_one(box, np.stack([c["box"] for c in clusters]))
                for candidate in np.argsort(-overlaps, kind="stable"):
                    if overlaps[candidate] < iou_threshold:
                        break
                    if all(member[2] != index for member in clusters[candidate]["members"]):
                        chosen = clusters[candidate]
                        break
            if chosen is None:
                clusters.append({"box": box, "members": [(score, box, index)]})
                continue
            chosen["members"].append((score, box, index))
            weights = np.array([member[0] for member in chosen["members"]])
            chosen["box"] = (np.stack([m[1] for m in chosen["members"]]) * weights[:, None]).sum(0) / weights.sum()
        scored = sorted(((sum(member[0] for member in cluster["members"]) / n_passes, cluster["box"])
                         for cluster in clusters), key=lambda pair: -pair[0])
        kept = []
        for score, box in scored:
            if kept and box_iou_one(box, np.stack([k for _, k in kept])).max() >= iou_threshold:
                continue
            kept.append((score, box))
        for score, box in kept:
            fused_boxes.append(box)
            fused_scores.append(score)
            fused_labels.append(label)
    order = np.argsort(-np.asarray(fused_scores), kind="stable")
    boxes = np.asarray(fused_boxes, dtype=np.float32).reshape(-1, 4)[order]
    return boxes, np.asarray(fused_scores, dtype=np.float32)[order], np.asarray(fused_labels, dtype=np.int64)[order]
