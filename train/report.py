"""The evaluation's report files: metrics.json (every figure), metrics.md (the tables), curves.png
(precision-recall and F1 against the score threshold) and thresholds.json (the F1-optimal
thresholds, which train.archive gives the model).
"""

import json
import os

import numpy as np

from train.metrics import OPTIMAL_LABEL
from trouble.severity import GRADE_NAMES

# What a report writes into its folder (predictions.json only when train.evaluate runs a model).
REPORT_FILES = ("metrics.json", "metrics.md", "curves.png", "thresholds.json", "predictions.json")


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


def headline_table(coco, block, names):
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
                  f"{data['predictions']} detections at any score (the tables count those at the thresholds), "
                  f"types: {', '.join(names)}.", "",
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
    lines += headline_table(metrics["coco"], block, names)
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
    lines += headline_table(metrics["coco"], optimal, names) + [""]
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
