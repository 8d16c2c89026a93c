"""Batch CLI: run the detector over a folder of photos and write COCO-format results.

    python -m handler.predict_folder PHOTOS --model model_store/trouble.mar --out results.json
    python -m handler.predict_folder PHOTOS --server http://127.0.0.1:8080 --out results.json --annotated out/ \
        --csv counts.csv

In process (--model: a .mar or a model folder) or through a running TorchServe (--server); both
return the same response per photo, so the results are the same. Writes a COCO results list
({image_id, category_id, bbox [x, y, w, h], score}), the images ({id, file_name}) and categories
lists, and the full response per photo; with --annotated, each photo with its coloured boxes; with
--csv, one row per photo (counts per type, total, severity grade, or why it was skipped) for a
spreadsheet. Existing outputs are replaced only with --overwrite.

Exit codes: 0 done; 1 no photo could be analysed; 2 a bad option, folder or output, or a model or
server that cannot be used (nothing analysed); 130 interrupted (what was analysed is written).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from pathlib import Path

import requests

from trouble.images import PHOTO_SUFFIXES, BadInput


class ServerRefused(RuntimeError):
    """TorchServe refused the request itself (token, model name): every photo would fail alike."""


class ServerClient:
    """The TorchServe inference API with the same `predict` signature as TroubleDetector."""

    def __init__(self, base_url: str, token: str | None = None, model_name: str = "trouble", timeout_s: float = 330):
        self.url = f"{base_url.rstrip('/')}/predictions/{model_name}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s

    def check_running(self):
        """Fail at once, with what to do, when nothing answers (rather than once per photo)."""
        ping = self.url.split("/predictions/")[0] + "/ping"
        try:
            requests.get(ping, headers=self.headers, timeout=10)
        except requests.ConnectionError as error:
            raise ConnectionError(f"TorchServe is not answering at {self.url} (is it running? `make serve`)") from error

    def predict(self, image_bytes: bytes, score_threshold=None, sliced=None, slice_size=None, framing=None,
                tta=None) -> dict:
        headers = dict(self.headers)
        for name, value in (("X-Trouble-Threshold", score_threshold), ("X-Trouble-Sliced", sliced),
                            ("X-Trouble-Slice-Size", slice_size), ("X-Trouble-Framing", framing),
                            ("X-Trouble-TTA", tta)):
            if value is not None:
                headers[name] = str(value)
        try:
            reply = requests.post(self.url, data=image_bytes, headers=headers, timeout=self.timeout_s)
        except requests.ConnectionError as error:
            raise ConnectionError(f"TorchServe is not answering at {self.url} (is it running? `make serve`)") from error
        try:
            body = reply.json()
        except ValueError:
            body = {"error": reply.text[:200]}
        if reply.status_code == 413 and not isinstance(body.get("code"), str):  # TorchServe's own size limit
            raise BadInput("too_large", f"The photo is {len(image_bytes) / 2**20:.1f} MiB, more than the server "
                                        f"accepts (TorchServe's max_request_size: 64 MiB in this repository's "
                                        f"config.properties)", 413)
        if reply.status_code != 200:
            message = f"server answered {reply.status_code}: {body.get('error') or body.get('message') or body}"
            if isinstance(body.get("code"), str):  # the handler's refusal, with its machine-readable code
                raise BadInput(body["code"], message, reply.status_code)
            if body.get("type") == "InvalidKeyException":  # TorchServe's own errors carry a number
                raise ServerRefused(f"{message}. Set TROUBLE_API_TOKEN to the inference key in the server's "
                                    f"key_file.json")
            if reply.status_code == 404:
                raise ServerRefused(f"{message} (is the model registered as 'trouble'?)")
            raise ValueError(message)
        return body


def open_predictor(model: str | None = None, server: str | None = None):
    if server:
        client = ServerClient(server, token=os.environ.get("TROUBLE_API_TOKEN"))
        client.check_running()
        return client
    from trouble.inference import TroubleDetector

    return TroubleDetector.from_path(model)


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
                 sliced=None, slice_size=None, annotated_dir: Path | None = None, progress: bool = True, tta=None,
                 framing=None):
    """Run every (image_id, path) and yield (image_id, response or {file_name, error, code}, COCO results).

    category_ids maps type name → COCO category id; None numbers each answer's model types from 1.
    An error's code is the refusal's (not_an_image, corrupt_image, ...), "unreadable" for a file
    that cannot be read, or "model_failed" for anything else."""
    drawing_names = annotated_names([path for _, path in images])
    for number, (image_id, path) in enumerate(images, 1):
        try:
            response = predictor.predict(path.read_bytes(), score_threshold, sliced, slice_size, framing=framing,
                                         tta=tta)
        except ServerRefused:
            raise
        except Exception as error:  # noqa: BLE001  one bad photo stops nothing
            if getattr(error, "code", None) == "bad_parameter":  # an option, not the photo: all would fail
                raise
            code = getattr(error, "code", None) or ("unreadable" if isinstance(error, OSError) else "model_failed")
            print(f"  {path.name}: skipped: {error}", file=sys.stderr)
            yield image_id, {"file_name": path.name, "error": str(error), "code": code}, []
            continue
        response["file_name"] = path.name
        ids = category_ids if category_ids is not None else model_category_ids(response["model"]["classes"])
        if annotated_dir is not None:
            from trouble.render import annotate_image

            annotated_dir.mkdir(parents=True, exist_ok=True)
            annotate_image(path.read_bytes(), response).save(annotated_dir / drawing_names[path])
        if progress and (number % 20 == 0 or number == len(images)):
            print(f"  {number}/{len(images)} photos", flush=True)
        yield image_id, response, to_coco_results(response, image_id, ids)


def predict_images(predictor, images: list[tuple[int, Path]], category_ids: dict | None, score_threshold=None,
                   sliced=None, slice_size=None, tta=None, framing=None):
    """predict_each, collected: (COCO results, {image_id: response or error})."""
    results, responses = [], {}
    for image_id, response, found in predict_each(predictor, images, category_ids, score_threshold, sliced,
                                                  slice_size, progress=True, tta=tta, framing=framing):
        responses[image_id] = response
        results += found
    return results, responses


def write_counts_csv(path: Path, classes: list, responses: list):
    """One row per photo, in folder order: what a clinic puts in a spreadsheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # surrogateescape: a file name that is not UTF-8 (unzipped from a Windows archive) keeps its bytes.
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", *classes, "total", "grade", "grade_name", "error"])
        for response in responses:
            if "error" in response:
                writer.writerow([response["file_name"], *[""] * len(classes), "", "", "", response["error"]])
                continue
            severity = response["severity"]
            writer.writerow([response["file_name"], *[response["counts"][name] for name in classes],
                             response["total"], severity["grade"], severity["name"], ""])


def output_problem(args, paths: list[Path]) -> str | None:
    """Why this run may not write its outputs, checked before any photo is analysed: yesterday's
    results are not replaced unless asked (--overwrite)."""
    outputs = [Path(args.out)] + ([Path(args.csv)] if args.csv else [])
    if len({path.resolve() for path in outputs}) < len(outputs):
        return f"--out and --csv are the same file ({args.out}); give each its own"
    for path in outputs:
        if path.is_dir():
            return f"{path} is a folder; --out and --csv name files"
    if args.annotated and Path(args.annotated).exists() and not Path(args.annotated).is_dir():
        return f"--annotated {args.annotated} is a file; give a folder for the drawings"
    for path in outputs + ([Path(args.annotated) / "x"] if args.annotated else []):
        blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
        if blocking is not None:  # found only when writing, after every photo: all results lost
            return f"{blocking} is a file, so {path.parent} cannot be made; choose other output paths"
    existing = [str(path) for path in outputs if path.exists()]
    if args.annotated:
        folder = Path(args.annotated)
        existing += [str(folder / name) for name in annotated_names(paths).values() if (folder / name).exists()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        one = len(existing) == 1
        return f"{shown} already exist{'s' if one else ''}; add --overwrite to replace {'it' if one else 'them'}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", help="a folder of JPEG/PNG/WebP/HEIC photos")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a .mar or model folder, run in this process")
    source.add_argument("--server", help="TorchServe inference address, e.g. http://127.0.0.1:8080")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--annotated", help="folder for the photos with their boxes drawn")
    parser.add_argument("--csv", help="CSV file with one row per photo: counts per type, total, grade")
    parser.add_argument("--threshold", type=float, help="one score threshold for every type (default: the model's)")
    parser.add_argument("--sliced", choices=["true", "false"], help="SAHI sliced inference (default: the model's)")
    parser.add_argument("--slice-size", type=int)
    parser.add_argument("--framing", choices=["face", "none"], help="crop each photo to the face when the face is "
                                                                    "small in it, or never (default: the model's)")
    parser.add_argument("--tta", choices=["true", "false"], help="test-time augmentation: several passes over "
                                                                 "each photo, fused (default: the model's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out, --csv or drawing (without it such a run stops at once)")
    args = parser.parse_args(argv)

    folder = Path(args.photos)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    if args.annotated and Path(args.annotated).resolve() == folder.resolve():
        print(f"error: --annotated {args.annotated} is the photos' folder: its drawings would replace photos "
              f"there; choose another folder", file=sys.stderr)
        return 2
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        print(f"error: no {', '.join(PHOTO_SUFFIXES)} photos in {folder}", file=sys.stderr)
        return 2
    others = sorted(p.name for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() not in PHOTO_SUFFIXES and not p.name.startswith("."))
    if others:  # said, so that a photo in another format is not missed in silence
        shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
        print(f"note: {len(others)} files left out, not named as photos ({', '.join(PHOTO_SUFFIXES)}): {shown}",
              file=sys.stderr)
    problem = output_problem(args, paths)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        predictor = open_predictor(args.model, args.server)
    except (ConnectionError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images = list(enumerate(paths, 1))
    results, responses, interrupted = [], {}, False
    try:
        for image_id, response, found in predict_each(predictor, images, None, args.threshold, args.sliced,
                                                      args.slice_size,
                                                      Path(args.annotated) if args.annotated else None, tta=args.tta,
                                                      framing=args.framing):
            responses[image_id] = response
            results += found
    except (BadInput, ServerRefused) as error:  # a bad --threshold or --slice-size, a token the server refuses
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was analysed so far is written, not lost
        interrupted = True
    for image_id, path in images[len(responses):]:
        responses[image_id] = {"file_name": path.name, "error": "not analysed: the run was interrupted"}
    answered = [response for response in responses.values() if "error" not in response]
    # The classes of an answer, else (nothing answered) the local model's; a server's are then unknown.
    classes = answered[0]["model"]["classes"] if answered else getattr(predictor, "classes", [])
    category_ids = model_category_ids(classes)
    output = {"categories": [{"id": i, "name": n} for n, i in category_ids.items()],
              "images": [{"id": i, "file_name": p.name} for i, p in images],
              "results": results, "responses": [responses[i] for i, _ in images]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(output, indent=1))
    if args.csv:
        write_counts_csv(Path(args.csv), classes, output["responses"])
    failed = len(paths) - len(answered)
    print(f"wrote {args.out}: {len(results)} detections in {len(paths) - failed} photos"
          + (f"; {failed} photos skipped (see 'responses')" if failed else ""))
    if interrupted:
        print(f"interrupted after {len(answered)} of {len(paths)} photos: the rest are marked 'not analysed'",
              file=sys.stderr)
        return 130
    if not answered:
        print(f"error: none of the {len(paths)} photos could be analysed (see 'responses' in {args.out})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
