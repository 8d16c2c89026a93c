r"""Choose the app's example photos: for each severity grade, the photo on which the model's count
is off by the median amount for that grade. Typical photos, neither its best nor its worst.

    python -m train.evaluate --model model_store/trouble.mar --gt data/acne04/valid/annotations.json \
        --out reports/valid_served                                   # writes predictions.json
    python -m bench.example_photos --predictions reports/valid_served/predictions.json \
        --gt data/acne04/valid/annotations.json --threshold 0.2296 --out bench/results/example_photos_valid283.json

Prints, per grade, the chosen photo with its marked and found counts, and the median error (and,
with --out, writes them as JSON); copy the photos into space/examples/ and their labels into
space/app.py's EXAMPLE_LABELS.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

if not __package__:  # run as `python bench/example_photos.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import (at_least, existing_file, existing_path, output_file, parse_checked, read_predictions,
                             run_context, run_main, score, write_results)


def typical_photos(gt: dict, predictions: list, threshold: float) -> dict:
    """{grade: (file name, lesions marked, lesions found, median |found - marked| of the grade)}."""
    found = Counter(p["image_id"] for p in predictions if p["score"] >= threshold)
    marked = Counter(a["image_id"] for a in gt["annotations"])
    by_grade = defaultdict(list)
    for image in gt["images"]:
        if image.get("grade") is not None:
            error = abs(found[image["id"]] - marked[image["id"]])
            by_grade[image["grade"]].append((error, image["file_name"], marked[image["id"]], found[image["id"]]))
    chosen = {}
    for grade, rows in sorted(by_grade.items()):
        rows.sort()
        median = rows[(len(rows) - 1) // 2][0]  # the lower median: an error some photo has
        error, name, n_marked, n_found = next(row for row in rows if row[0] == median)
        chosen[grade] = (name, n_marked, n_found, median)
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.example_photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, type=existing_file, help="an evaluation's predictions.json")
    parser.add_argument("--gt", required=True, type=existing_path, help="the ground truth it was run on (graded)")
    parser.add_argument("--threshold", required=True, type=score, help="the model's served score threshold")
    parser.add_argument("--limit", type=at_least(1), help="the --limit the evaluation used (the same images)")
    parser.add_argument("--out", type=output_file, help="also write the chosen photos to this JSON file")
    args = parse_checked(parser, argv)
    gt, predictions = read_predictions(args.predictions, args.gt, args.limit)
    chosen = typical_photos(gt, predictions, args.threshold)
    if not chosen:
        print(f"error: no image of {args.gt} carries a grade", flush=True)
        return 2
    print("| grade | photo | lesions marked | found | median count error of the grade |\n|---|---|---|---|---|")
    for grade, (name, n_marked, n_found, median) in chosen.items():
        print(f"| {grade} | {name} | {n_marked} | {n_found} | {median} |")
    if args.out:
        rows = [{"grade": grade, "photo": name, "lesions_marked": n_marked, "lesions_found": n_found,
                 "median_count_error_of_the_grade": median} for grade, (name, n_marked, n_found, median) in chosen.items()]
        write_results(args.out, {"predictions": args.predictions, "gt": args.gt,
                                 "threshold": args.threshold, "limit": args.limit,
                                 "context": run_context(predictions=args.predictions), "photos": rows})
    return 0


if __name__ == "__main__":
    run_main(main)
