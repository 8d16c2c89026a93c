"""Tests for train/evaluate.py, train/metrics.py and train/report.py: metrics on hand-built and
generated COCO sets, report files, CLI, and one check on the real ACNE04 validation ground truth."""

import glob
import json
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ACNE04_DATA, run_module
from tests.synthetic_data import LESION_TYPES, make_dataset
from train.evaluate import EvaluationError, evaluate
from train.report import write_report
from trouble.severity import grade_from_count

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACNE04_VALID = str(ACNE04_DATA / "valid")
TYPES = ("papule", "pustule", "comedone")


def make_coco(image_boxes, types=TYPES, grades=None, groups=None, size=640):
    """COCO dict from image_boxes: one list per image of (category_id, [x, y, w, h])."""
    images, annotations = [], []
    for i, boxes in enumerate(image_boxes):
        image = {"id": i + 1, "file_name": f"img_{i + 1}.jpg", "width": size, "height": size}
        if grades is not None:
            image["grade"] = grades[i]
        if groups is not None:
            image["group"] = groups[i]
        images.append(image)
        for category_id, box in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category_id,
                                "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(types)]
    return {"images": images, "annotations": annotations, "categories": categories}


def random_boxes(rng, n, size=640):
    """n non-overlapping lesion-sized boxes on a grid, so ground truth never matches itself twice."""
    cells = rng.sample(range((size // 40) ** 2), n)
    return [[(c % (size // 40)) * 40 + rng.randint(0, 8), (c // (size // 40)) * 40 + rng.randint(0, 8),
             rng.randint(16, 30), rng.randint(16, 30)] for c in cells]


def generated_set(n_images=16, seed=0):
    """Three types, lesion counts spread over all four grades, some grade labels off the count
    rule (as in ACNE04), two groups."""
    rng = random.Random(seed)
    image_boxes, grades = [], []
    for i in range(n_images):
        count = [3, 12, 35, 70][i % 4]
        image_boxes.append([(rng.randint(1, len(TYPES)), box) for box in random_boxes(rng, count)])
        grade = grade_from_count(count)
        grades.append((grade + 1) % 4 if i % 5 == 0 else grade)  # labels that disagree with the count
    groups = ["clinic_a" if i % 2 else "clinic_b" for i in range(n_images)]
    return make_coco(image_boxes, grades=grades, groups=groups)


def gt_as_predictions(gt, score=1.0):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": score}
            for a in gt["annotations"]]


def test_ground_truth_as_predictions_is_perfect():
    gt = generated_set()
    metrics = evaluate(gt, gt_as_predictions(gt), 0.3, {"pretrained": "none (test)"})

    assert metrics["coco"]["mAP50"] == pytest.approx(1.0)
    assert metrics["coco"]["mAP50_95"] == pytest.approx(1.0)
    block = metrics["at_thresholds"]
    for name in TYPES:
        assert block["per_type"][name]["f1"] == 1.0
        assert block["per_type"][name]["fp"] == 0 and block["per_type"][name]["fn"] == 0
    assert block["mean_f1"] == 1.0
    assert block["count"]["mae"] == 0 and block["count"]["bias"] == 0
    assert all(block["count"]["per_type"][name]["mae"] == 0 for name in TYPES)
    grade = block["grade"]
    assert grade["accuracy"] == grade["count_rule_agreement"]
    assert grade["confusion"] == grade["count_rule_confusion"]
    # The generated labels disagree with the count on 4 of 16 images, so this is not trivially 1.
    assert grade["count_rule_agreement"] == pytest.approx(12 / 16)


def test_random_detector_scores_near_zero():
    gt = generated_set()
    rng = random.Random(123)
    predictions = [{"image_id": image["id"], "category_id": rng.randint(1, 3),
                    "bbox": [rng.uniform(0, 600), rng.uniform(0, 600), rng.uniform(10, 40), rng.uniform(10, 40)],
                    "score": rng.random()}
                   for image in gt["images"] for _ in range(40)]
    metrics = evaluate(gt, predictions, 0.3)
    assert metrics["coco"]["mAP50"] < 0.05
    assert metrics["at_thresholds"]["mean_f1"] < 0.1
    assert "the caller did not say which model" in " ".join(metrics["notes"])


def test_hand_built_precision_recall_f1():
    # Type 1: three lesions. Type 2: no lesion. Type 3: one lesion.
    gt = make_coco([[(1, [100, 100, 20, 20]), (1, [200, 200, 20, 20]), (1, [300, 300, 20, 20]),
                     (3, [400, 400, 20, 20])]])
    predictions = [
        # Two predictions on the first lesion: the higher score (IoU 0.68, lower than the other's)
        # takes it, one-to-one, so the exact box comes second and is a false positive.
        {"image_id": 1, "category_id": 1, "bbox": [102, 102, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [100, 100, 20, 20], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [200, 200, 20, 20], "score": 0.7},   # TP
        {"image_id": 1, "category_id": 1, "bbox": [306, 306, 20, 20], "score": 0.6},   # FP: IoU 0.32 only
        {"image_id": 1, "category_id": 1, "bbox": [300, 300, 20, 20], "score": 0.2},   # below 0.5: dropped
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.9},     # type without GT
        {"image_id": 1, "category_id": 1, "bbox": [400, 400, 20, 20], "score": 0.9},   # right place, wrong type
    ]
    metrics = evaluate(gt, predictions, 0.5)
    per_type = metrics["at_thresholds"]["per_type"]

    papule = per_type["papule"]
    assert (papule["tp"], papule["fp"], papule["fn"]) == (2, 3, 1)
    assert papule["precision"] == pytest.approx(2 / 5)
    assert papule["recall"] == pytest.approx(2 / 3)
    assert papule["f1"] == pytest.approx(2 * 2 / (2 * 2 + 3 + 1))

    pustule = per_type["pustule"]  # no ground truth: recall and F1 undefined
    assert (pustule["tp"], pustule["fp"]) == (0, 1)
    assert pustule["precision"] == 0.0 and pustule["recall"] is None and pustule["f1"] is None

    comedone = per_type["comedone"]  # one lesion, no prediction
    assert comedone["precision"] is None and comedone["recall"] == 0.0 and comedone["f1"] == 0.0

    assert metrics["at_thresholds"]["mean_f1_types"] == ["papule", "comedone"]
    assert metrics["at_thresholds"]["mean_f1"] == pytest.approx((4 / 8 + 0.0) / 2)
    assert any("pustule" in note and "no ground-truth" in note for note in metrics["notes"])
    assert metrics["coco"]["AP50_per_type"]["pustule"] is None

    count = metrics["at_thresholds"]["count"]
    assert count["mae"] == 2 and count["bias"] == 2          # 6 kept predictions vs 4 lesions
    assert count["per_type"]["comedone"] == {"mae": 1.0, "bias": -1.0}

    # By the grade of the count found: the one image's 6 found (moderate) against 4 marked.
    assert count["by_found_grade"][1] == {"images": 1, "mae": 2.0, "marked_minus_found_p10": -2.0,
                                          "marked_minus_found_p90": -2.0}
    assert count["by_found_grade"][0] is None and count["by_found_grade"][2] is None

    # A per-type threshold that also keeps the 0.2 prediction: the third lesion becomes a TP.
    metrics = evaluate(gt, predictions, {"papule": 0.1, "pustule": 0.5, "comedone": 0.5})
    assert metrics["at_thresholds"]["per_type"]["papule"]["tp"] == 3
    assert metrics["at_thresholds"]["per_type"]["papule"]["recall"] == 1.0


def test_count_error_by_the_grade_of_the_count_found():
    """The error of a severe count is not a mild one's: split by the grade the model's count falls in."""
    from train.metrics import count_errors_by_found_grade

    found = [2, 3, 4, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30]
    marked = [2, 4, 1, 10, 20, 30, 40, 50, 60, 25, 35, 45, 55]
    mild, moderate, severe, very_severe = count_errors_by_found_grade(found, marked)
    assert mild["images"] == 3 and mild["mae"] == pytest.approx(4 / 3)
    assert moderate is None and very_severe is None
    assert severe["images"] == 10 and severe["mae"] == pytest.approx(14.0)
    # marked - found: -20, -10, 0, 10, 20, 30, -5, 5, 15, 25: the 10th and 90th percentiles (numpy's linear)
    assert severe["marked_minus_found_p10"] == pytest.approx(-11.0)
    assert severe["marked_minus_found_p90"] == pytest.approx(25.5)


def test_detections_made_on_another_ground_truth_are_refused(tmp_path):
    """Valid's image ids lie within train's: the report beside the detections names the ground truth
    they were made on. The same file, or one recorded on another machine (its path not here) under
    the same split folder and name, passes."""
    from train.evaluate import check_made_on, report_beside

    (tmp_path / "train").mkdir()
    (tmp_path / "valid").mkdir()
    train, valid = tmp_path / "train" / "annotations.json", tmp_path / "valid" / "annotations.json"
    train.write_text(json.dumps(make_coco([[], [(1, [10, 10, 20, 20])]])))
    valid.write_text(json.dumps(make_coco([[(1, [10, 10, 20, 20])]])))
    predictions = tmp_path / "eval" / "predictions.json"
    predictions.parent.mkdir()
    predictions.write_text("[]")
    for made_on, refused in ((valid, False), (train, True), (".carry/data/acne04/valid/annotations.json", False),
                             (".carry/data/acne04/train/annotations.json", True)):
        (predictions.parent / "metrics.json").write_text(json.dumps({"data": {"gt": str(made_on)}}))
        if refused:
            with pytest.raises(EvaluationError, match=f"holds detections made on {made_on}"):
                check_made_on(report_beside(predictions), predictions, valid)
        else:
            check_made_on(report_beside(predictions), predictions, valid)
    result = run_module(["train.evaluate", "--predictions", str(predictions), "--gt", str(valid), "--out",
                         str(tmp_path / "out")], check=False)
    assert result.returncode != 0 and "holds detections made on" in result.stderr and "Traceback" not in result.stderr


def test_threshold_dict_must_name_every_type():
    gt = make_coco([[(1, [10, 10, 20, 20])]])
    with pytest.raises(EvaluationError, match="missing: \\['pustule', 'comedone'\\]"):
        evaluate(gt, [], {"papule": 0.5})
    with pytest.raises(EvaluationError, match="unknown: \\['nodule'\\]"):
        evaluate(gt, [], {"papule": 0.5, "pustule": 0.5, "comedone": 0.5, "nodule": 0.5})


def test_f1_optimal_threshold_is_chosen():
    lesions = [[10 + 40 * k, 10, 20, 20] for k in range(4)]
    gt = make_coco([[(1, box) for box in lesions]], types=("acne",))
    far = [[500, 500 + 30 * k, 20, 20] for k in range(3)]
    # Scores high to low: TP TP FP TP FP FP TP. Keeping the first four gives F1 = 6/8, the best.
    ranked = [lesions[0], lesions[1], far[0], lesions[2], far[1], far[2], lesions[3]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    predictions = [{"image_id": 1, "category_id": 1, "bbox": box, "score": s} for box, s in zip(ranked, scores)]

    metrics = evaluate(gt, predictions, 0.3)
    assert metrics["at_thresholds"]["per_type"]["acne"]["f1"] == pytest.approx(8 / 11)
    # Halfway between the last kept score (0.6) and the first dropped one (0.5).
    assert metrics["f1_optimal_thresholds"] == {"acne": pytest.approx(0.55)}
    optimal = metrics["at_f1_optimal_thresholds"]
    assert optimal["label"] == "at F1-optimal thresholds, chosen on this split"
    assert optimal["per_type"]["acne"]["f1"] == pytest.approx(0.75)
    assert (optimal["per_type"]["acne"]["tp"], optimal["per_type"]["acne"]["fp"]) == (3, 1)
    f1_curve = metrics["curves"]["f1_vs_threshold"]
    assert f1_curve["acne"][f1_curve["thresholds"].index(0.55)] == pytest.approx(0.75)


def test_tied_scores_are_kept_or_dropped_together():
    gt = make_coco([[(1, [10, 10, 20, 20])]], types=("acne",))
    predictions = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
                   {"image_id": 1, "category_id": 1, "bbox": [300, 300, 20, 20], "score": 0.4},
                   {"image_id": 1, "category_id": 1, "bbox": [400, 400, 20, 20], "score": 0.4}]
    metrics = evaluate(gt, predictions, 0.1)
    assert metrics["f1_optimal_thresholds"]["acne"] == pytest.approx(0.65)
    assert metrics["at_f1_optimal_thresholds"]["per_type"]["acne"]["f1"] == 1.0


def test_per_group_metrics():
    rng = random.Random(5)
    image_boxes = [[(1, box) for box in random_boxes(rng, n)] for n in (4, 8, 10, 30)]
    gt = make_coco(image_boxes, types=("acne",), grades=[0, 1, 1, 2], groups=["found", "found", "missed", "missed"])
    # The detector finds every lesion in group "found" and nothing in group "missed".
    predictions = [p for p in gt_as_predictions(gt, 0.9) if p["image_id"] in (1, 2)]

    metrics = evaluate(gt, predictions, 0.5)
    found, missed = metrics["groups"]["found"], metrics["groups"]["missed"]
    assert found["images"] == 2 and missed["images"] == 2
    assert found["coco"]["mAP50"] == pytest.approx(1.0) and missed["coco"]["mAP50"] == 0.0
    assert found["at_thresholds"]["per_type"]["acne"]["f1"] == 1.0
    assert missed["at_thresholds"]["per_type"]["acne"]["f1"] == 0.0
    assert found["at_thresholds"]["count"]["mae"] == 0
    assert missed["at_thresholds"]["count"]["bias"] == -20          # (10 + 30) / 2 lesions missed
    assert found["at_thresholds"]["grade"]["accuracy"] == 1.0
    assert missed["at_thresholds"]["grade"]["accuracy"] == 0.0       # counted 0 lesions: grade 0
    # The whole set lies in between.
    assert metrics["at_thresholds"]["per_type"]["acne"]["recall"] == pytest.approx(12 / 52)
    assert metrics["at_thresholds"]["grade"]["accuracy"] == 0.5


def test_images_without_lesions_or_predictions():
    gt = make_coco([[], [(1, [10, 10, 20, 20])], []], types=("acne",), grades=[0, 0, 0])
    metrics = evaluate(gt, [], 0.5)
    assert metrics["coco"]["mAP50"] == 0.0
    assert metrics["coco"]["AP50_per_type"] == {"acne": 0.0}  # nothing found: 0, as the mAP, not "n/a"
    assert metrics["at_thresholds"]["count"] == {"mae": pytest.approx(1 / 3), "bias": pytest.approx(-1 / 3),
                                                 "per_type": {"acne": {"mae": pytest.approx(1 / 3),
                                                                       "bias": pytest.approx(-1 / 3)}},
                                                 "images": 3,
                                                 # all three counts found (0) are mild: marked - found 0, 1, 0
                                                 "by_found_grade": [{"images": 3, "mae": pytest.approx(1 / 3),
                                                                     "marked_minus_found_p10": 0.0,
                                                                     "marked_minus_found_p90": pytest.approx(0.8)},
                                                                    None, None, None]}
    assert metrics["at_thresholds"]["grade"]["accuracy"] == 1.0

    no_lesions = make_coco([[], []], types=("acne",))
    metrics = evaluate(no_lesions, [], 0.5)
    assert metrics["coco"]["mAP50"] is None
    assert metrics["at_thresholds"]["mean_f1"] is None
    assert metrics["at_thresholds"]["count"]["mae"] == 0


def test_unknown_ids_are_named():
    gt = make_coco([[(1, [10, 10, 20, 20])]])
    with pytest.raises(EvaluationError, match="image ids not in .*\\[999, 1000\\]"):
        evaluate(gt, [{"image_id": i, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5} for i in (1000, 999)])
    with pytest.raises(EvaluationError, match="category ids not in .*\\[7\\]"):
        evaluate(gt, [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.5}])
    with pytest.raises(EvaluationError, match="record 0 needs"):
        evaluate(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5], "score": 0.5}])


def test_report_files(tmp_path):
    gt = generated_set(n_images=8)
    model = {"config": "train/configs/example.py", "pretrained": "none (trained from scratch)", "tta": None}
    metrics = evaluate(gt, gt_as_predictions(gt, 0.8), 0.3, model)
    paths = write_report(metrics, tmp_path / "report")

    for name in ("metrics.json", "metrics.md", "curves.png", "thresholds.json"):
        assert os.path.getsize(tmp_path / "report" / name) > 0
    assert set(paths) == {"metrics.json", "metrics.md", "curves.png", "thresholds.json"}
    assert json.loads((tmp_path / "report" / "thresholds.json").read_text()) == metrics["f1_optimal_thresholds"]
    with open(tmp_path / "report" / "curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "report" / "metrics.json") as f:
        saved = json.load(f)
    assert saved["model"] == model
    assert saved["coco"]["mAP50"] == pytest.approx(1.0)
    assert saved["f1_optimal_thresholds"] == metrics["f1_optimal_thresholds"]

    markdown = (tmp_path / "report" / "metrics.md").read_text()
    assert "| mAP50 | mean F1 | F1 papule | F1 pustule | F1 comedone |" in markdown
    # The model section comes first, so nobody mistakes a from-scratch figure for a pretrained one.
    assert markdown.index("none (trained from scratch)") < markdown.index("| mAP50 |")
    assert "at F1-optimal thresholds, chosen on this split" in markdown
    assert "clinic_a" in markdown and "clinic_b" in markdown
    assert "- **tta**: off" in markdown  # not "None"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "train.evaluate", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_end_to_end(tmp_path):
    # A generated data set in the project layout, negatives included; its own boxes as predictions.
    make_dataset(tmp_path / "synth", n_images=8, fmt="coco")
    gt_path, predictions_path = tmp_path / "synth" / "train" / "annotations.json", tmp_path / "predictions.json"
    gt = json.loads(gt_path.read_text())
    predictions_path.write_text(json.dumps(gt_as_predictions(gt, 0.7)))
    model_path = tmp_path / "model.json"
    model_path.write_text(json.dumps({"config": "generated", "pretrained": "none (trained from scratch)"}))

    result = run_cli("--gt", str(gt_path), "--predictions", str(predictions_path), "--out", str(tmp_path / "valid"),
                     "--model-info", str(model_path))
    assert result.returncode == 0, result.stderr
    assert "| mAP50 | mean F1 | " + " | ".join(f"F1 {name}" for name in LESION_TYPES) + " |" in result.stdout
    assert "scored at 0.3 for every type" in result.stdout  # no report beside these predictions
    for name in ("metrics.json", "metrics.md", "curves.png", "thresholds.json"):
        assert (tmp_path / "valid" / name).is_file()
    saved = json.loads((tmp_path / "valid" / "metrics.json").read_text())
    assert saved["model"] == {"config": "generated", "pretrained": "none (trained from scratch)",
                              "predictions_file": str(predictions_path)}
    assert saved["at_thresholds"]["thresholds"] == {name: 0.3 for name in LESION_TYPES}
    assert saved["coco"]["mAP50"] == pytest.approx(1.0)
    assert saved["at_thresholds"]["grade"]["accuracy"] == 1.0
    assert set(saved["groups"]) == {image["group"] for image in gt["images"]}

    # Thresholds chosen on one split, reused on another through its metrics.json.
    result = run_cli("--gt", str(gt_path), "--predictions", str(predictions_path), "--out", str(tmp_path / "test"),
                     "--thresholds-json", str(tmp_path / "valid" / "metrics.json"))
    assert result.returncode == 0, result.stderr
    reused = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert reused["at_thresholds"]["thresholds"] == saved["f1_optimal_thresholds"]


def test_cli_bad_predictions_give_a_clear_error(tmp_path):
    gt_path = tmp_path / "annotations.json"
    gt_path.write_text(json.dumps(make_coco([[(1, [10, 10, 20, 20])]])))
    broken = tmp_path / "broken.json"
    broken.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}')  # cut off
    wrong_split = tmp_path / "wrong_split.json"
    wrong_split.write_text(json.dumps([{"image_id": 42, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]))

    out_of_range = tmp_path / "scores.json"  # its F1-optimal threshold came out at -0.05
    out_of_range.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 7}]))
    huge = tmp_path / "huge.json"  # an integer too large for a float: it was an OverflowError traceback
    huge.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10 ** 400, 4], "score": 0.5}]))
    deep = tmp_path / "deep.json"  # it was a RecursionError traceback
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path, message in ((broken, "is not valid JSON"), (deep, "is not valid JSON: nested too deeply"),
                          (wrong_split, "image ids not in"),
                          (out_of_range, "a score in [0, 1]"), (huge, "bbox [x, y, w, h]"),
                          (tmp_path / "missing.json", "cannot read predictions file")):
        result = run_cli("--gt", str(gt_path), "--predictions", str(path), "--out", str(tmp_path / "out"))
        assert result.returncode != 0
        assert message in result.stderr and str(path) in result.stderr
        assert "Traceback" not in result.stderr
    assert "42" in run_cli("--gt", str(gt_path), "--predictions", str(wrong_split), "--out", str(tmp_path / "o")).stderr
    assert not (tmp_path / "out").exists()

    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.5}]))
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"papule": 0.4}))
    result = run_cli("--gt", str(gt_path), "--predictions", str(good), "--out", str(tmp_path / "out"),
                     "--thresholds-json", str(thresholds))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert str(thresholds) in result.stderr and "missing: ['pustule', 'comedone']" in result.stderr
    result = run_cli("--gt", str(gt_path), "--predictions", str(good), "--out", str(tmp_path / "out"),
                     "--thresholds-json", '{"papule": 0.4}')  # the same thresholds as JSON text: not called a file
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--thresholds-json {\"papule\": 0.4}: " in result.stderr and "file" not in result.stderr
    # Options that only a model run uses, and a model description a model run makes itself: refused, not ignored.
    model_info = tmp_path / "model.json"
    model_info.write_text("{}")
    for args, message in ((["--predictions", str(good), "--sliced", "true", "--input-size", "800"],
                           "--sliced, --input-size: only with --model or --work-dir"),
                          (["--predictions", str(good), "--nms-iou", "0.5", "--tta", "false", "--framing", "face"],
                           "--tta, --framing, --nms-iou: only with --model or --work-dir"),
                          (["--model", str(tmp_path / "any.mar"), "--model-info", str(model_info)],
                           "--model-info: only with --predictions"),
                          (["--model", str(tmp_path / "any.mar"), "--nms-iou", "0"], "nms_iou must be a number")):
        result = run_cli("--gt", str(gt_path), "--out", str(tmp_path / "refused"), *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and not (tmp_path / "refused").exists()


def test_cli_missing_or_broken_model_gives_a_clear_error(tmp_path):
    gt_path = tmp_path / "annotations.json"
    gt_path.write_text(json.dumps(make_coco([[(1, [10, 10, 20, 20])]])))
    not_a_mar = tmp_path / "photo.mar"
    not_a_mar.write_bytes(b"\xff\xd8 a photo renamed")
    for model, message in ((tmp_path / "missing.mar", "not found"), (not_a_mar, "is not a .mar archive")):
        result = run_cli("--gt", str(gt_path), "--model", str(model), "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert str(model) in result.stderr and message in result.stderr
    result = run_cli("--gt", str(gt_path), "--work-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'run_meta.json'} not found: is {tmp_path} a finished training work dir?" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_thresholds_outside_0_1_and_a_zero_limit_are_refused_before_any_model_runs(tmp_path):
    gt_path = tmp_path / "annotations.json"
    gt_path.write_text(json.dumps(make_coco([[(1, [10, 10, 20, 20])]])))
    never_opened = tmp_path / "model.mar"  # the refusals come first: it does not even exist
    for options, message in ((["--score-threshold", "2"], "score thresholds must be in [0, 1], got {'papule': 2.0"),
                             (["--score-threshold", "nan"], "score thresholds must be a number in [0, 1] or a dict"),
                             (["--limit", "0"], "--limit must be at least 1, got 0")):
        result = run_cli("--gt", str(gt_path), "--model", str(never_opened), "--out", str(tmp_path / "out"), *options)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def acne04_as_coco(folder):
    """ACNE04 VOC XMLs as a one-class COCO dict; the grade comes from the file name (levleK_)."""
    image_boxes, grades = [], []
    for xml_path in sorted(glob.glob(os.path.join(folder, "*.xml"))):
        grades.append(int(re.match(r"levle(\d)_", os.path.basename(xml_path)).group(1)))
        boxes = []
        for box in ET.parse(xml_path).getroot().iter("bndbox"):
            x1, y1, x2, y2 = (float(box.find(tag).text) for tag in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((1, [x1, y1, x2 - x1, y2 - y1]))
        image_boxes.append(boxes)
    return make_coco(image_boxes, types=("acne",), grades=grades)


@pytest.mark.skipif(not os.path.isdir(ACNE04_VALID), reason=f"ACNE04 data not at {ACNE04_VALID}")
def test_acne04_valid_count_rule_agreement():
    gt = acne04_as_coco(ACNE04_VALID)
    assert len(gt["images"]) == 283
    metrics = evaluate(gt, gt_as_predictions(gt), 0.3, {"pretrained": "ground truth as predictions"})
    grade = metrics["at_thresholds"]["grade"]
    assert grade["images"] == 283
    assert grade["accuracy"] == grade["count_rule_agreement"]
    assert 0.9 < grade["count_rule_agreement"] <= 1.0
    assert metrics["coco"]["mAP50"] == pytest.approx(1.0)


def test_limit_takes_images_spread_over_the_file():
    from train.evaluate import spread_sample

    images = list(range(100))  # e.g. sorted by grade: the first 25 all grade 0
    assert spread_sample(images, 4) == [0, 25, 50, 75]
    assert spread_sample(images, None) == images and spread_sample(images, 500) == images
    assert len(set(spread_sample(images, 30))) == 30


def test_an_f1_optimal_threshold_is_written_without_float_noise():
    """Halfway between 0.1075 and 0.1074 is 0.10744999999999999 in floats: written as 0.10745, which
    still keeps the one and drops the other."""
    gt = make_coco([[(1, [10, 10, 20, 20])]], types=("acne",))
    predictions = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.1075},
                   {"image_id": 1, "category_id": 1, "bbox": [300, 300, 20, 20], "score": 0.1074}]
    threshold = evaluate(gt, predictions, 0.05)["f1_optimal_thresholds"]["acne"]
    assert repr(threshold) == "0.10745" and 0.1074 < threshold < 0.1075


def test_crowd_regions_of_a_ground_truth_are_left_out_of_every_figure():
    """A crowd region (a --gt not made by train.data, which drops them) was ignored by mAP and
    counted as a missed lesion by recall, F1 and the count: one figure said 1.0, the others 0.5."""
    gt = make_coco([[(1, [10, 10, 20, 20]), (1, [200, 200, 60, 60])]], types=("acne",))
    gt["annotations"][1]["iscrowd"] = 1
    predictions = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    metrics = evaluate(gt, predictions, 0.5)
    acne = metrics["at_thresholds"]["per_type"]["acne"]
    assert metrics["coco"]["mAP50"] == pytest.approx(1.0) and acne["recall"] == 1.0 and acne["f1"] == 1.0
    assert metrics["at_thresholds"]["count"]["mae"] == 0 and metrics["data"]["gt_boxes"] == 1
    assert any(note.startswith("1 crowd regions (iscrowd) of the ground truth are left out") for note in metrics["notes"])
    assert gt["annotations"][1]["iscrowd"] == 1 and len(gt["annotations"]) == 2  # the caller's dict is unchanged


@pytest.mark.parametrize("ids", [[0, 1], [5, 5], [None, 1]], ids=["from 0", "repeated", "one missing"])
def test_annotation_ids_of_any_numbering_give_the_same_map(ids):
    """pycocotools takes an annotation id of 0 for "no match", and two boxes of one id for one: an
    export numbering from 0 (as Roboflow's does), or repeating or leaving out ids, scored two perfect
    detections 0.2525 instead of 1.0 while F1 said 1.0."""
    gt = make_coco([[(1, [10, 10, 20, 20]), (1, [200, 200, 30, 30])]], types=("acne",))
    for annotation, given in zip(gt["annotations"], ids):
        annotation.pop("id")
        if given is not None:
            annotation["id"] = given
    predictions = [{"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in gt["annotations"]]
    metrics = evaluate(gt, predictions, 0.5)
    assert metrics["coco"]["mAP50"] == pytest.approx(1.0)
    assert metrics["at_thresholds"]["per_type"]["acne"]["f1"] == 1.0
    assert [a.get("id") for a in gt["annotations"]] == ids  # the caller's dict is unchanged


def test_boxes_of_zero_width_or_height_are_left_out_with_a_note():
    """No prediction can match a box of no area: each was a missed lesion that no model could find."""
    gt = make_coco([[(1, [10, 10, 20, 20]), (1, [200, 200, 0, 30]), (1, [300, 300, 12, 0])]], types=("acne",))
    predictions = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    metrics = evaluate(gt, predictions, 0.5)
    assert metrics["at_thresholds"]["per_type"]["acne"]["recall"] == 1.0 and metrics["data"]["gt_boxes"] == 1
    assert metrics["at_thresholds"]["count"]["mae"] == 0
    assert any(note.startswith("2 boxes of zero width or height in the ground truth are left out")
               for note in metrics["notes"])


def test_the_batch_clis_output_given_as_predictions_is_named_with_what_to_run(tmp_path):
    batch_output = tmp_path / "results.json"
    batch_output.write_text(json.dumps({"categories": [], "images": [], "results": [], "responses": []}))
    with pytest.raises(EvaluationError, match="is the batch CLI's output .* run `python -m train.evaluate --model"):
        evaluate(make_coco([[(1, [10, 10, 20, 20])]]), str(batch_output))


def test_saved_detections_are_scored_on_the_images_they_were_made_on(smoke_mar, synthetic_data, tmp_path):
    """Found in an audit. A --limit run's predictions.json scored without --limit counted every other
    image as one where nothing was found (mAP50 0.004 instead of 0.117), and scoring into a folder
    holding another model run's report replaced that report."""
    gt = str(synthetic_data / "valid" / "annotations.json")
    run = tmp_path / "run"
    assert run_cli("--model", str(smoke_mar), "--gt", gt, "--limit", "2", "--out", str(run)).returncode == 0
    assert json.loads((run / "metrics.json").read_text())["data"]["limit"] == 2
    saved = str(run / "predictions.json")
    unlimited = run_cli("--gt", gt, "--predictions", saved, "--out", str(tmp_path / "all"))
    assert unlimited.returncode == 2 and "had --limit 2): score them with --limit 2" in unlimited.stderr, \
        unlimited.stderr
    assert run_cli("--gt", gt, "--predictions", saved, "--limit", "2", "--out", str(tmp_path / "two")).returncode == 0
    # Another model run's folder: its report stays.
    other = tmp_path / "other_run"
    other.mkdir()
    (other / "predictions.json").write_text("[]")
    (other / "metrics.json").write_text("{}")
    into_other = run_cli("--gt", gt, "--predictions", saved, "--limit", "2", "--out", str(other))
    assert into_other.returncode == 2 and "holds a model run's report" in into_other.stderr, into_other.stderr
    assert (other / "metrics.json").read_text() == "{}"
