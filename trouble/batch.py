"""Run a predictor over many photos: what the batch CLI (handler/predict_folder.py) and evaluation
(train/evaluate.py) share.

A predictor is anything with `predict(image_bytes, threshold, sliced, slice_size, framing=, tta=)`
returning the inference core's response: the model in process (trouble.inference.TroubleDetector)
or a running TorchServe (trouble.server_client.TorchServeClient). One bad photo is reported and
skipped; a server that refuses every request, or stops answering, ends the run.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from trouble.images import BadInput
from trouble.render import analysis_time, annotate_image
from trouble.server_client import ServerRefused, ServerTimeout, ServerUnreachable


def to_coco_results(response: dict, image_id: int, category_ids: dict) -> list[dict]:
    """One response → COCO results entries; category_ids maps type name → COCO category id."""
    results = []
    for detection in response["detections"]:
        x1, y1, x2, y2 = detection["box"]
        results.append({"image_id": image_id, "category_id": category_ids[detection["type"]],
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": detection["score"]})
    return results


def model_category_ids(classes: list) -> dict:
    """The model's types, in its order, numbered from 1 as COCO categories."""
    return {name: index for index, name in enumerate(classes, 1)}


def annotated_names(paths: list[Path]) -> dict:
    """{photo path: file name of its drawing}: photo.png, or photo.jpg.png where that name would be
    another photo's too (a.jpg and a.png; a.jpg beside a photo named a.jpg.png). Never one name twice:
    a drawing would replace another's, also on a disk that ignores case (A.jpg and a.png)."""
    names = {path: f"{path.stem}.png" for path in paths}
    while True:  # full names (photo.jpg.png) are unique among themselves, so this ends
        taken = Counter(name.casefold() for name in names.values())
        clashing = [path for path in paths
                    if taken[names[path].casefold()] > 1 and names[path] != f"{path.name}.png"]
        if not clashing:
            return names
        for path in clashing:
            names[path] = f"{path.name}.png"


def predict_each(predictor, images: list[tuple[int, Path]], category_ids: dict | None, score_threshold=None,
                 sliced=None, slice_size=None, annotated_dir: Path | None = None, tta=None, framing=None):
    """Run every (image_id, path) and yield (image_id, response or {file_name, error, code}, COCO results).

    category_ids maps type name → COCO category id; None numbers each answer's model types from 1.
    An error's code is the refusal's (not_an_image, corrupt_image, ...), "unreadable" for a file
    that cannot be read, "timeout" for a server that gave no answer in time, or "model_failed" for
    anything else."""
    drawing_names = annotated_names([path for _, path in images])
    for number, (image_id, path) in enumerate(images, 1):
        try:
            photo = path.read_bytes()  # read once: the model and the drawing take the same bytes
            if not photo:  # not the server's "the request has no image": the file itself holds nothing
                raise BadInput("empty_file", "the file is empty (0 bytes): a copy that did not finish, or a photo "
                                             "still in the cloud?")
            response = predictor.predict(photo, score_threshold, sliced, slice_size, framing=framing, tta=tta)
        except (ServerRefused, ServerUnreachable):  # every photo would fail alike
            raise
        except Exception as error:  # noqa: BLE001  one bad photo stops nothing
            if getattr(error, "code", None) == "bad_parameter":  # an option, not the photo: all would fail
                raise
            code, why = error_code(error), error_text(error)
            print(f"  {path.name}: skipped: {why}", file=sys.stderr)
            print_progress(number, len(images))
            yield image_id, {"file_name": path.name, "error": why, "code": code}, []
            continue
        response["file_name"] = path.name
        response["analysed_at"] = analysis_time()  # for a folder of follow-up photos, and the drawing's caption
        ids = category_ids if category_ids is not None else model_category_ids(response["model"]["classes"])
        if annotated_dir is not None:
            annotated_dir.mkdir(parents=True, exist_ok=True)
            annotate_image(photo, response).save(annotated_dir / drawing_names[path])
        print_progress(number, len(images))
        yield image_id, response, to_coco_results(response, image_id, ids)


def print_progress(number: int, total: int):
    """Every 20th photo and the last, answered or skipped."""
    if number % 20 == 0 or number == total:
        print(f"  {number}/{total} photos", flush=True)


def error_code(error: Exception) -> str:
    """The refusal's own code (not_an_image, corrupt_image, ...), else what kind of failure it was."""
    if getattr(error, "code", None):
        return error.code
    if isinstance(error, ServerTimeout):  # an OSError too, but the photo was read
        return "timeout"
    return "unreadable" if isinstance(error, OSError) else "model_failed"


def error_text(error: Exception) -> str:
    """Why a photo was skipped, for a person: a file that cannot be read is said so in words ("is a
    directory"), not as "[Errno 21] Is a directory: '/the/whole/path'"."""
    if isinstance(error, OSError) and not isinstance(error, ServerTimeout) and error.strerror:
        return f"the file cannot be read ({error.strerror[0].lower()}{error.strerror[1:]})"
    return str(error)


def predict_images(predictor, images: list[tuple[int, Path]], category_ids: dict | None, score_threshold=None,
                   sliced=None, slice_size=None, tta=None, framing=None):
    """predict_each, collected: (COCO results, {image_id: response or error})."""
    results, responses = [], {}
    for image_id, response, found in predict_each(predictor, images, category_ids, score_threshold, sliced,
                                                  slice_size, tta=tta, framing=framing):
        responses[image_id] = response
        results += found
    return results, responses
