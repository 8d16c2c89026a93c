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

writes metrics.json, metrics.md, curves.png and thresholds.json (the F1-optimal thresholds) into --out,
and, with --model or --work-dir, predictions.json (the model's detections, to score again in seconds).
"""

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from train import REPO, file_in_place_of_folder
from train.metrics import (NUM_GRADES, EvaluationError, ThresholdError, evaluate_checked, is_number,
                           resolve_thresholds)
from train.report import REPORT_FILES, headline_table, write_report
from trouble.images import BadInput
from trouble.settings import check_input_size, check_nms_iou



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


def _is_box(value):
    return (isinstance(value, (list, tuple)) and len(value) == 4 and all(is_number(v) for v in value)
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
    if not images:  # figures of nothing, and "F1-optimal" thresholds that are only the defaults
        raise EvaluationError(f"{source}: no images to evaluate on")
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


def check_limit_of_run(report: dict, predictions_path, limit):
    """EvaluationError when the evaluation report beside a predictions.json (report_beside) says they
    were made with another --limit: the other photos would be scored as photos where nothing was found."""
    ran_limit = (report.get("data") or {}).get("limit")
    if ran_limit and limit != ran_limit:
        raise EvaluationError(f"{predictions_path} holds the detections of {ran_limit} images (the run that saved "
                              f"them had --limit {ran_limit}): score them with --limit {ran_limit}")


def coverage_note(predictions: list, images: int) -> str | None:
    """A note where predictions name under half the images scored (without the report beside them to
    say how many photos the model ran on): a model run at the 0.05 score floor names almost every photo."""
    named = len({prediction["image_id"] for prediction in predictions})
    if named >= images / 2:
        return None
    return (f"the predictions name {named} of the {images} images; the others are scored as photos where nothing "
            f"was found. If the model ran on fewer (--limit N), score them with the same --limit N")


def check_made_on(report: dict, predictions_path, gt_path):
    """EvaluationError when the evaluation report beside an evaluation's predictions.json (its
    metrics.json, report_beside) says they were made on another ground truth than gt_path: valid's
    image ids also lie within train's, so they would be scored against the wrong photos without a
    word. Compared by content where the recorded file is at hand, else by split folder and file name
    (a report made on another machine records its paths)."""
    made_on = report["data"].get("gt") if isinstance(report.get("data"), dict) else None
    if not isinstance(made_on, str):
        return  # no evaluation report beside them: nothing to compare
    recorded, given = Path(made_on), Path(gt_path)
    same = (recorded.read_bytes() == given.read_bytes() if recorded.is_file() and given.is_file()
            else recorded.parts[-2:] == given.parts[-2:])
    if not same:
        raise EvaluationError(f"{predictions_path} holds detections made on {made_on} (the metrics.json beside it "
                              f"says so), not on {gt_path}; if that report is wrong, move it away")


def saved_predictions(path, gt_path, limit=None, records=None) -> tuple[dict, list, dict, list]:
    """Saved predictions (a predictions.json at path; `records`: its contents, if already read), to
    be scored against the ground truth at gt_path → (the ground truth sampled with `limit`, the
    predictions on its images, the evaluation report beside them ({} if none), notes for the report).
    Refused where that report says they were made on another ground truth or with another
    --limit, or where they name image or type ids the ground truth does not know. Photos the run
    could not read are left out again, as the run left them out: scored, their lesions would count
    as missed."""
    report = report_beside(path)
    check_made_on(report, path, gt_path)
    check_limit_of_run(report, path, limit)
    all_gt = load_ground_truth(gt_path)[0]
    predictions = load_predictions(path if records is None else records, all_gt, str(gt_path))
    gt = sample_ground_truth(all_gt, limit)  # the images a --limit run scored: the others are left out
    notes = []
    unread = set((report.get("data") or {}).get("unreadable_image_ids") or [])
    if unread & {image["id"] for image in gt["images"]}:
        gt = ground_truth_of(gt, {image["id"] for image in gt["images"]} - unread)
        notes.append(f"{len(unread)} image(s) the run could not read are left out of every figure, as the run "
                     f"left them out (its metrics.json names them)")
    kept = {image["id"] for image in gt["images"]}
    predictions = [prediction for prediction in predictions if prediction["image_id"] in kept]
    coverage = coverage_note(predictions, len(gt["images"]))
    return gt, predictions, report, notes + ([coverage] if coverage else [])


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
                and is_number(pred.get("score")) and 0 <= pred["score"] <= 1):
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



def thresholds_of_the_run(report: dict, predictions_path) -> tuple:
    """The thresholds to score saved predictions at when none are given → (thresholds, note): those
    of the report beside them (report_beside: the model run that saved them, at its model's own
    thresholds), else 0.3 for every type. Scoring a model's predictions.json again gave other figures
    than its run, at 0.3 instead of the model's thresholds."""
    at_thresholds = report.get("at_thresholds")
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
    return ground_truth_of(gt, {image["id"] for image in images})


def ground_truth_of(gt: dict, image_ids: set) -> dict:
    """The ground truth of the images whose ids are in image_ids, in the file's order, with their boxes."""
    return dict(gt, images=[image for image in gt["images"] if image["id"] in image_ids],
                annotations=[a for a in gt["annotations"] if a["image_id"] in image_ids])


def predict_ground_truth_images(detector, gt_path, limit=None, sliced=None, slice_size=None, tta=None,
                                framing=None, gt=None):
    """Run the detector on the images of a ground-truth file (`limit` of them spread evenly, or
    all); return (COCO results, the ground truth of the images read, {image id: "file name: why"} of
    the images that could not be).
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
    unknown = [name for name in category_ids if name not in detector.classes]
    if unknown:  # found now, not by the thresholds' check once the model has run over every photo
        raise EvaluationError(f"{gt_path} has types the model does not know: {unknown} (the model's: "
                              f"{detector.classes}): evaluate it on data of its own types")
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
        gt = ground_truth_of(gt, {image["id"] for image in images} - unread_ids)
    unread = {i: f"{responses[i]['file_name']}: {responses[i]['error']}" for i in sorted(unread_ids)}
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
    metrics["data"]["limit"] = limit  # what scoring its predictions.json again must repeat
    if unread:
        metrics["data"]["unreadable_images"] = list(unread.values())
        metrics["data"]["unreadable_image_ids"] = list(unread)  # what scoring predictions.json again leaves out
        metrics["notes"].append(f"{len(unread)} image(s) could not be read and are left out of every figure: "
                                f"{'; '.join(list(unread.values())[:5])}{' ...' if len(unread) > 5 else ''}")
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
    print("\n".join(headline_table(metrics["coco"], metrics["at_thresholds"], metrics["data"]["types"])))
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
    parser.add_argument("--out", required=True, help="folder for metrics.json, metrics.md, curves.png, "
                                                     "thresholds.json (and, with --model/--work-dir, predictions.json)")
    thresholds = parser.add_mutually_exclusive_group()
    thresholds.add_argument("--score-threshold", type=float,
                            help="one threshold for every type (default: a model's own; for --predictions, those of "
                                 "the report beside them, else 0.3)")
    thresholds.add_argument("--thresholds-json", help="{type: threshold} as JSON text (e.g. '{\"acne\": 0.23}') "
                                                     "or a file, or a metrics.json whose F1-optimal thresholds to use")
    parser.add_argument("--overwrite", action="store_true", help="replace the report an earlier run wrote in --out")
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
    other_run = Path(args.out) / "predictions.json"
    if args.predictions and other_run.is_file() and other_run.resolve() != Path(args.predictions).resolve():
        # That run's report would be replaced by one of other detections, and left beside its own.
        parser.error(f"--out {args.out} holds a model run's report and the detections it was made from "
                     f"({other_run}): give another --out")
    earlier = [name for name in REPORT_FILES if (Path(args.out) / name).is_file()]
    if earlier and not args.overwrite:  # a report of 283 photos had been replaced by one of 3 without a word
        parser.error(f"--out {args.out} holds an earlier report ({', '.join(earlier)}): give another --out, or "
                     f"pass --overwrite to replace it")
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
            gt, predictions, run_report, notes = saved_predictions(args.predictions, args.gt, args.limit)
            # The model the run beside them described (its name, weights, settings), unless told otherwise.
            if not args.model_info and isinstance(run_report.get("model"), dict):
                model_info = dict(run_report["model"])
            model_info["predictions_file"] = args.predictions
            if score_thresholds is None:
                score_thresholds, note = thresholds_of_the_run(run_report, args.predictions)
                print("note:", note)
            metrics = evaluate_checked(gt, args.gt, predictions, score_thresholds, model_info)
            metrics["data"]["limit"] = args.limit
            metrics["notes"].extend(notes)
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
    except KeyboardInterrupt:  # the report is written at the end: before it, nothing in --out has changed
        print(f"interrupted: the report in {args.out} is written only once every photo is scored", file=sys.stderr)
        return 130

    names = metrics["data"]["types"]
    print("\n".join(headline_table(metrics["coco"], metrics["at_thresholds"], names)))
    print("F1-optimal thresholds (chosen on this split):", json.dumps(metrics["f1_optimal_thresholds"]))
    for note in metrics["notes"]:
        print("note:", note)
    print("wrote", ", ".join(paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
