r"""Batch CLI: run the detector over a folder of photos and write COCO-format results.

    python -m handler.predict_folder PHOTOS --model model_store/trouble.mar --out results.json
    python -m handler.predict_folder PHOTOS --server http://127.0.0.1:8080 --out results.json --annotated out/ \
        --csv counts.csv
    python -m handler.predict_folder PHOTOS --model model_store/trouble.mar --csv counts.csv   # the sheet alone

In process (--model: a .mar or a model folder) or through a running TorchServe (--server); both
return the same response per photo, so the results are the same. Writes a COCO results list
({image_id, category_id, bbox [x, y, w, h], score}), the images ({id, file_name}) and categories
lists, and the full response per photo; with --annotated, each photo with its coloured boxes; with
--csv, one row per photo (counts per type, total, severity grade, or why it was skipped) for a
spreadsheet; --out, --csv or both. Existing outputs are replaced only with --overwrite.

Exit codes: 0 done; 1 no photo could be analysed, or the server stopped answering or refused the
request partway, e.g. its key expired (what was analysed is written); 2 a bad option, folder or
output, or a model or server that cannot be used (nothing analysed); 130 interrupted by Ctrl-C,
SIGTERM or SIGHUP (what was analysed is written). A run stopped early writes, where --overwrite
would replace an earlier sheet, to NAME.partial.json and NAME.partial.csv instead: the earlier one
is kept.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
from pathlib import Path

if not __package__:  # run as `python handler/predict_folder.py`: the shared library is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trouble.batch import annotated_names, model_category_ids, predict_each
from trouble.count_range import answered_as_validated, typical_range_of
from trouble.images import PHOTO_SUFFIXES, BadInput, photos_in_subfolders
from trouble.output_paths import write_problem
from trouble.server_client import ServerRefused, ServerUnreachable, TorchServeClient, address_problem


def open_predictor(model: str | None = None, server: str | None = None):
    """The local model, or a client of a running TorchServe checked before the first photo."""
    if server:
        problem = address_problem(server)
        if problem:
            raise ValueError(f"--server {problem}")
        client = TorchServeClient(server, token=os.environ.get("TROUBLE_API_TOKEN"))
        answer = client.ping()
        if answer == "no ping":
            raise ConnectionError(f"{client.url} has no /ping: is it TorchServe's inference address "
                                  f"(inference_address in config.properties, port 8080 by default) and not "
                                  f"its management or metrics one?")
        if answer == "unreachable":
            raise ConnectionError(f"TorchServe is not answering at {client.url} (is it running? `make serve`)")
        if answer == "refuses the token":
            sent = "refuses this key" if client.headers else "wants a key, and none was sent"
            raise ConnectionError(f"TorchServe at {client.url} {sent}: set TROUBLE_API_TOKEN to the "
                                  f"inference key in the server's key_file.json")
        if answer == "unhealthy":  # every photo would wait for the full timeout, one after another
            raise ConnectionError(f"TorchServe at {client.url} says it is unhealthy (GET /ping): its model "
                                  f"cannot load; its logs/model_log.log says why")
        return client
    from trouble.inference import TroubleDetector

    return TroubleDetector.from_path(model)


def model_label(model: dict) -> str:
    """An answer's model as a sheet names it: "trouble 1.0 (weights 3f2a...)", what tells two archives
    apart (its weights' hash where the archive has one)."""
    weights = f" (weights {model['weights_sha256']})" if model.get("weights_sha256") else ""
    return f"{model['name']} {model['version']}{weights}"


def spreadsheet_text(name: str) -> str:
    """A file name as a spreadsheet cell: one starting with = + - @ (or a tab, a return) would be read
    as a formula, so it gets a leading apostrophe, which spreadsheets do not show."""
    return f"'{name}" if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name


def settings_columns(settings: dict) -> list:
    """sliced, tta, framing: how the photo was run, which changes its count (a sliced or augmented
    run counts more); each column empty where an older archive's answer does not say."""
    sliced, tta, framing = settings.get("sliced"), settings.get("tta"), settings.get("framing")
    if sliced is not None:  # on, yet no slice: a photo no larger than one slice, run whole
        sliced = f"yes ({settings.get('slices')} slices)" if sliced and settings.get("slices") else \
            "no (the photo is no larger than a slice)" if sliced else "no"
    if tta is not None:
        tta = f"yes ({settings.get('passes')} passes)" if tta else "no"
    if framing == "face":
        framing = "face (cropped to it)" if settings.get("face_crop") else "face (not cropped)"
    return ["" if value is None else value for value in (sliced, tta, framing)]


def write_counts_csv(path: Path, classes: list, responses: list):
    """One row per photo, in folder order: what a clinic puts in a spreadsheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # backslashreplace: a file name that is not UTF-8 (unzipped from a Windows archive) is written as
    # \udcff, so that the sheet stays UTF-8 text that every reader opens.
    with path.open("w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        writer = csv.writer(f)
        header = ["file_name", *classes, "total", "grade", "grade_name", "typical_count_low", "typical_count_high",
                  "warnings", "taken_at", "analysed_at", "model", "score_thresholds", "sliced", "tta", "framing",
                  "as_validated", "error"]
        writer.writerow(header)
        for response in responses:
            if "error" in response:  # every column between the name and the error left empty
                writer.writerow([spreadsheet_text(response["file_name"]), *[""] * (len(header) - 2),
                                 response["error"]])
                continue
            severity = response["severity"]
            # The codes of what makes the count say little (no_colour, little_skin, small_face); an
            # archive made before answers carried them is not taken for "nothing to say".
            warnings = ("; ".join(warning["code"] for warning in response["warnings"]) if "warnings" in response
                        else "not given (an archive older than warnings)")
            # Where the marked count typically lies (trouble.count_range); empty where the model's
            # validation gives no range for this answer.
            typical = typical_range_of(response)
            # What a sheet made with --threshold differs by from one at the model's own.
            used = response["settings"]["score_thresholds"]
            thresholds = "; ".join(f"{name} {value:g}" for name, value in used.items())
            # Whether the figures of the model's validation (the typical range) speak for this answer.
            validated = response["settings"].get("as_validated", answered_as_validated(response))
            as_validated = {True: "yes", False: "no", None: ""}[validated]
            writer.writerow([spreadsheet_text(response["file_name"]), *[response["counts"][name] for name in classes],
                             response["total"], severity["grade"], severity["name"],
                             *((typical["low"], typical["high"]) if typical else ("", "")), warnings,
                             response["image"].get("taken_at") or "", response["analysed_at"],
                             model_label(response["model"]), thresholds, *settings_columns(response["settings"]),
                             as_validated, ""])


def output_problem(args, paths: list[Path]) -> str | None:
    """Why this run may not write its outputs, checked before any photo is analysed: yesterday's
    results are not replaced unless asked (--overwrite)."""
    outputs = [Path(path) for path in (args.out, args.csv) if path]
    if len({resolved(path) for path in outputs}) < len(outputs):
        return f"--out and --csv are the same file ({args.out}); give each its own"
    photos = {resolved(path) for path in paths}
    for path in outputs:
        if resolved(path) in photos:  # --overwrite or not: a photo is never replaced by results
            return f"{path} is one of the photos: write the results elsewhere"
        if args.model and resolved(path) == resolved(Path(args.model)):  # --overwrite or not
            return f"{path} is the --model: write the results elsewhere"
    for path in outputs:
        if path.is_dir():
            return f"{path} is a folder; --out and --csv name files"
    if args.annotated and Path(args.annotated).exists() and not Path(args.annotated).is_dir():
        return f"--annotated {args.annotated} is a file; give a folder for the drawings"
    for path in outputs + ([Path(args.annotated)] if args.annotated else []):
        # Each found only when writing, after every photo: all results lost.
        if problem := write_problem(path):
            return f"{path}: {problem}; choose other output paths"
    existing = [str(path) for path in outputs if path.exists()]
    if args.annotated:
        folder = Path(args.annotated)
        existing += [str(folder / name) for name in annotated_names(paths).values() if (folder / name).exists()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        one = len(existing) == 1
        return f"{shown} already exist{'s' if one else ''}; add --overwrite to replace {'it' if one else 'them'}"
    return None


def resolved(path: Path) -> Path:
    """The path with its links followed, or as it is where they loop (a link to itself, skipped later
    as a file that cannot be read)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop", before Python 3.13
        return path.absolute()


def written_whole(path: Path, write):
    """write(a file beside path), then put it in path's place: a sheet is replaced whole or not at all."""
    staged = path.with_name(f".{path.name}.writing")
    try:
        write(staged)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def partial_path(path: Path) -> Path:
    """Where an interrupted run writes what it analysed when `path` holds an earlier, complete run's."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def where_errors_are(out: Path | None, csv_path: Path | None) -> str:
    """Where a user reads why a photo was skipped: the JSON's answers, else the sheet's error column."""
    return f"'responses' in {out}" if out else f"the 'error' column of {csv_path}"


def interrupt(signum, frame):
    """SIGTERM and SIGHUP (kill, `timeout`, a closed ssh session) end a run as Ctrl-C does: what was
    analysed is written."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler.predict_folder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", help="a folder of JPEG/PNG/WebP/HEIC photos")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a .mar or model folder, run in this process")
    source.add_argument("--server", help="TorchServe inference address, e.g. http://127.0.0.1:8080")
    parser.add_argument("--out", help="JSON file for the results: every detection and answer (--out, --csv or both)")
    parser.add_argument("--annotated", help="folder for the photos with their boxes drawn")
    parser.add_argument("--csv", help="CSV file with one row per photo: counts per type, total, grade")
    parser.add_argument("--threshold", type=float, help="one score threshold for every type (default: the model's)")
    parser.add_argument("--sliced", choices=["true", "false"], help="SAHI sliced inference (default: the model's)")
    parser.add_argument("--slice-size", type=int, help="slice size in pixels, 128..2048, when slicing is on "
                                                        "(default: the model's)")
    parser.add_argument("--framing", choices=["face", "none"], help="crop each photo to the face when the face is "
                                                                    "small in it, or never (default: the model's)")
    parser.add_argument("--tta", choices=["true", "false"], help="test-time augmentation: several passes over "
                                                                 "each photo, fused (default: the model's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out, --csv or drawing (without it such a run stops at once)")
    args = parser.parse_args(argv)
    if not args.out and not args.csv:
        parser.error("give --out (a JSON file of every detection), --csv (a sheet of counts per photo) or both")
    sys.stdout.reconfigure(errors="backslashreplace")  # a file name that is not UTF-8, printed: escaped

    folder = Path(args.photos)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    if args.annotated and Path(args.annotated).resolve() == folder.resolve():
        print(f"error: --annotated {args.annotated} is the photos' folder: its drawings would replace photos "
              f"there; choose another folder", file=sys.stderr)
        return 2
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        print(f"error: the folder {folder} cannot be read ({error.strerror or error})", file=sys.stderr)
        return 2
    paths = [p for p in entries if p.suffix.lower() in PHOTO_SUFFIXES]
    # Only the folder's own photos are analysed: photos in its subfolders (one per patient, say) are
    # named, not left out in silence.
    subfolders = photos_in_subfolders(folder)
    if subfolders:
        shown = ", ".join(f"{name}/ ({'cannot be read' if count is None else count})"
                          for name, count in list(subfolders.items())[:10])
        more = f" and {len(subfolders) - 10} more" if len(subfolders) > 10 else ""
        print(f"note: photos in subfolders are not analysed (run the command on each folder): {shown}{more}",
              file=sys.stderr)
    if not paths:
        print(f"error: no {', '.join(PHOTO_SUFFIXES)} photos in {folder}"
              + (" itself, only in its subfolders" if any(subfolders.values()) else ""), file=sys.stderr)
        return 2
    others = sorted(p.name for p in entries
                    if p.is_file() and p.suffix.lower() not in PHOTO_SUFFIXES and not p.name.startswith("."))
    if others:  # said, so that a photo in another format is not missed in silence
        shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
        print(f"note: {len(others)} files left out, not named as photos ({', '.join(PHOTO_SUFFIXES)}): {shown}",
              file=sys.stderr)
    problem = output_problem(args, paths)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    earlier = [Path(path) for path in (args.out, args.csv) if path and Path(path).exists()]
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    try:
        predictor = open_predictor(args.model, args.server)
    except (ConnectionError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the model loads: no photo analysed, nothing written
        print("interrupted before the first photo: nothing was written", file=sys.stderr)
        return 130
    images = list(enumerate(paths, 1))
    results, responses, stopped = [], {}, None  # stopped: why the run ended early, if it did
    try:
        for image_id, response, found in predict_each(predictor, images, None, args.threshold, args.sliced,
                                                      args.slice_size,
                                                      Path(args.annotated) if args.annotated else None, tta=args.tta,
                                                      framing=args.framing):
            responses[image_id] = response
            results += found
    except (BadInput, ServerRefused) as error:  # a bad --threshold or --slice-size, a token the server refuses
        if not any("error" not in response for response in responses.values()):  # none analysed: nothing to keep
            # (files skipped before the model saw one, an empty one say, are no answers either)
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"error: {error}", file=sys.stderr)  # partway (a key that expired): what was answered is kept
        stopped = "the server refused the request"
    except KeyboardInterrupt:  # what was analysed so far is written, not lost
        stopped = "the run was interrupted"
    except ServerUnreachable:  # TorchServe stopped partway: the same, and the rest is for a later run
        stopped = "the server stopped answering"
    for signum in (signal.SIGTERM, signal.SIGHUP):  # from here on, a signal ends the writing as it ends Python
        signal.signal(signum, signal.SIG_DFL)
    reached = len(responses)  # answered or skipped; those after an early stop are not analysed
    for image_id, path in images[len(responses):]:
        responses[image_id] = {"file_name": path.name, "error": f"not analysed: {stopped}", "code": "not_analysed"}
    answered = [response for response in responses.values() if "error" not in response]
    # The classes of an answer, else (nothing answered) the local model's; a server's are then unknown.
    classes = answered[0]["model"]["classes"] if answered else getattr(predictor, "classes", [])
    category_ids = model_category_ids(classes)
    output = {"categories": [{"id": i, "name": n} for n, i in category_ids.items()],
              "images": [{"id": i, "file_name": p.name} for i, p in images],
              "results": results, "responses": [responses[i] for i, _ in images]}
    # A run stopped early (interrupted, a server that stopped answering) leaves an earlier, complete
    # sheet it would replace (--overwrite) as it was.
    out, csv_path = (Path(path) if path else None for path in (args.out, args.csv))
    if stopped and earlier:
        out, csv_path = out and partial_path(out), csv_path and partial_path(csv_path)
        print(f"the earlier {' and '.join(map(str, earlier))} are kept: what this run analysed goes to "
              f"{' and '.join(str(path) for path in (out, csv_path) if path)}", file=sys.stderr)
    try:
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            written_whole(out, lambda path: path.write_text(json.dumps(output, indent=1)))
        if csv_path:
            written_whole(csv_path, lambda path: write_counts_csv(path, classes, output["responses"]))
    except OSError as error:  # checked before the run, so a disk that filled up meanwhile
        print(f"error: could not write the results: {error}", file=sys.stderr)
        return 1
    not_analysed, skipped = len(paths) - reached, reached - len(answered)
    print(f"wrote {' and '.join(str(path) for path in (out, csv_path) if path)}: "
          f"{len(results)} detections in {len(answered)} photos"
          + (f"; {skipped} photos skipped (see {where_errors_are(out, csv_path)})" if skipped else "")
          + (f"; {not_analysed} not analysed" if not_analysed else ""))
    if stopped:
        print(f"{stopped} after {len(answered)} of {len(paths)} photos: the rest are marked 'not analysed'",
              file=sys.stderr)
        return 130 if stopped == "the run was interrupted" else 1
    if not answered:
        print(f"error: none of the {len(paths)} photos could be analysed (see {where_errors_are(out, csv_path)})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
