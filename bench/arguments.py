"""Argument types shared by the benchmarks: a bad value is refused by argparse, naming the option,
before anything runs (not a traceback, nor a long run of something else: `--limit 0` had meant
every photo)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trouble.output_paths import write_problem

# Options that name a benchmark's inputs: --out may be none of them.
INPUT_OPTIONS = ("model", "gt", "predictions", "photos", "data", "config")


def parse_checked(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """parser.parse_args (every benchmark has an --out, so --overwrite is added here), then refuse
    an --out that is one of the inputs (a predictions.json takes a whole model run to make again),
    or that exists without --overwrite (the committed figures in bench/results were replaced
    without a word)."""
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)
    for name in INPUT_OPTIONS if out else ():
        value = getattr(args, name, None)
        if isinstance(value, str) and Path(value).resolve() == Path(out).resolve():
            parser.error(f"--out {out} is the --{name} file: the results would replace it; give another --out")
    if out and Path(out).exists() and not args.overwrite:
        parser.error(f"--out {out} exists (an earlier run's results): give another --out, or pass --overwrite "
                     f"to replace it")
    return args


def run_main(main):
    """Run a benchmark's main() and exit with its code. The project's own errors (data a model does
    not fit, a config not found, a refused option) end in one line and exit code 2, not a traceback."""
    from train.evaluate import EvaluationError
    from train.train import TrainError
    from trouble.images import BadInput

    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    # FileNotFoundError, ValueError: e.g. a --model that is not a .mar or model folder.
    except (EvaluationError, TrainError, BadInput, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a photo of the ground truth that cannot be read (PIL's own message names it)
        print(f"error: {error.filename + ': ' if error.filename else ''}{error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


def write_results(out, result: dict):
    """A benchmark's results as JSON at `out` (its folder made), and a line saying so."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def run_context(detector=None, predictions=None, varied=()) -> dict:
    """What a result was measured on: the machine (timings move with its load), and the model, by its
    name, version and weights' hash (a path such as model_store/trouble.mar may since hold another
    archive): the detector's, or that of the evaluation report beside `predictions`. `varied`: the
    model settings the rows change, left out here."""
    import os
    import platform

    import torch

    context = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "load_average": [round(value, 2) for value in os.getloadavg()],
                           "platform": platform.platform()}}
    keys = [key for key in ("name", "version", "archived", "weights_sha256", "input_size", "nms_iou", "framing")
            if key not in varied]
    if detector is not None:
        info = {**detector.model_info(), "input_size": detector.input_size, "nms_iou": detector.nms_iou,
                "framing": detector.settings.framing}
        context["model"] = {key: info.get(key) for key in keys}
    elif predictions is not None:
        from train.evaluate import report_beside

        model = report_beside(predictions).get("model")
        context["model"] = {key: model.get(key) for key in keys} if isinstance(model, dict) else None
    return context


def at_least(least: int):
    """An int type for argparse that refuses values below `least`."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    parse.__name__ = f"int >= {least}"
    return parse


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number more than 0, got {value}")
    return value


def unit_fraction(text: str) -> float:
    """A number in (0, 1]: an IoU."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def score(text: str) -> float:
    """A number in [0, 1]: a score threshold."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def torch_device(text: str) -> str:
    """cpu, cuda or cuda:N, and CUDA only where there is a GPU."""
    import torch

    if text != "cpu" and not (text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit())):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this machine has no CUDA GPU (torch sees none)")
    return text


def output_file(text: str) -> str:
    """A file to write the results to: refused now if it is a folder, or cannot be written
    (trouble.output_paths), not after the whole run."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: give a file name, e.g. {Path(text) / 'results.json'}")
    if problem := write_problem(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def existing_file(text: str) -> str:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a folder: give a file in it" if path.is_dir() else f"{text} not found")
    return text


def read_predictions(path, gt_path, limit=None) -> tuple[dict, list]:
    """(ground truth, predictions) to score: the ground truth at gt_path sampled with `limit` (spread
    over the file, as the evaluation samples it), and an evaluation's predictions.json on those images
    (train.evaluate.saved_predictions, with its checks). An error naming the file where it is not a
    list of COCO results (a metrics.json given instead, a file cut short)."""
    from train.evaluate import saved_predictions

    try:
        predictions = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not JSON ({'nested too deeply' if isinstance(error, RecursionError) else error})") \
            from None
    if not isinstance(predictions, list) or not all(
            isinstance(p, dict) and {"image_id", "category_id", "bbox", "score"} <= set(p) for p in predictions):
        raise ValueError(f"{path} is not a list of COCO results (an evaluation's predictions.json)")
    gt, checked, _, notes = saved_predictions(path, gt_path, limit, records=predictions)
    for note in notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    return gt, checked


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} not found")
    return text


def existing_folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder" if Path(text).exists() else f"{text} not found")
    return text


def list_of(item, may_be_empty: bool = False):
    """A comma-separated list of values of type `item`, e.g. list_of(at_least(1)) for '1,4,8'."""

    def parse(text: str) -> list:
        values = [item(part) for part in text.split(",") if part.strip()]
        if not values and not may_be_empty:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
        return values

    return parse


def pixels(text: str) -> int:
    """A side in pixels that serving accepts for an input or a slice (trouble.settings' bounds)."""
    from trouble.settings import MAX_SLICE, MIN_SLICE

    value = _number(text, int)
    if not MIN_SLICE <= value <= MAX_SLICE:
        raise argparse.ArgumentTypeError(f"must be between {MIN_SLICE} and {MAX_SLICE} pixels, got {value}")
    return value


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
