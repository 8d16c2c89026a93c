r"""Import a detection data set (COCO JSON, Pascal VOC XML or YOLO txt) into the project's COCO layout.

    python -m train.data import --format voc --src ../shared/data/acne04 --out data/acne04 \
        --single-class acne --grade-from-filename 'levle(\d)_' --symlink

Output, the layout every other part of the project reads:
    OUT/<split>/annotations.json   images (id from 1, file_name, width, height, optional grade and group),
                                   annotations (bbox [x, y, w, h] in pixels, category_id from 1),
                                   categories (the same list, in the same order, in every split)
    OUT/<split>/<image files>      copied (default) or symlinked; file_name is relative to this folder
    OUT/import_report.json         counts per split and every problem found, with all the file names

Source layouts:
    split folders    SRC/train, SRC/valid, SRC/test (val, validation, train2017 ... are written as valid,
                     train, test: training validates on "valid"); without them SRC is one split
                     named by --split (default train).
    VOC              images with the .xml beside them (like ACNE04), Annotations/ + JPEGImages/ (splits from
                     ImageSets/Main/train.txt, val.txt, test.txt where there are any), or annotations/ +
                     images/ (LabelImg). Coordinates are PASCAL's 1-based pixel indices: x = xmin - 1,
                     width = xmax - xmin + 1.
    COCO             one JSON per split: <split>/annotations.json, <split>/_annotations.coco.json (Roboflow),
                     or annotations/instances_<split>.json with the images in <split>/ or images/<split>/
                     (COCO's captions_* and person_keypoints_* beside them are not read).
    YOLO             <split>/images + <split>/labels, images/<split> + labels/<split>, or the .txt beside the
                     images; lines "class cx cy w h" normalised to 0..1. Class names come from classes.txt
                     or data.yaml (names:), or else --classes, in index order.

Every image is decoded once, so a truncated file is found here and not in the middle of a training run.
Problems are repaired where that loses nothing and reported (each kind is listed in train/data_checks.py);
data that cannot be used at all ends the command with one line on stderr and exit code 2.
"""

# The command and the import itself: its options, writing OUT, and reading an import back (read_split,
# load_coco). Reading the three source formats is train/data_readers.py; checking every record,
# train/data_checks.py.

import argparse
import csv
import difflib
import json
import re
import shutil
import sys
from pathlib import Path

from train import file_in_place_of_folder
from train.data_checks import DataError, check_split, format_report, refuse_unusable, split_summary
from train.data_readers import FORMATS, detect_format, read_source


# ---------------------------------------------------------------- the import

def parse_class_list(text):
    if text is None or isinstance(text, (list, tuple)):
        return list(text) if text else None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"--classes names a class twice: {text}")
    return names or None


def compile_one_group_regex(pattern, option):
    if pattern is None:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DataError(f"{option} {pattern!r} is not a valid regular expression: {error}") from None
    if regex.groups != 1:
        raise DataError(f"{option} {pattern!r} must have exactly one (group), it has {regex.groups}")
    return regex


def read_group_csv(path):
    """{file name: group} from a CSV of file_name,group (a header line is allowed)."""
    if path is None:
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read --group-csv {path}: {error}") from None
    if rows and [cell.strip() for cell in rows[0][:2]] == ["file_name", "group"]:
        rows = rows[1:]
    bad = [i for i, row in enumerate(rows, 1) if len(row) < 2]
    if bad:
        raise DataError(f"--group-csv {path}: rows {bad[:10]} do not have 'file_name,group'")
    return {Path(row[0].strip()).name: row[1].strip() for row in rows}


def import_dataset(fmt, src, out, split="train", classes=None, single_class=None, grade_from_filename=None,
                   group_from_filename=None, group_csv=None, symlink=False, overwrite=False, verbose=False):
    """Import SRC into OUT in the project's COCO layout and return the report dict.

    fmt: "coco", "voc", "yolo" or None to guess. classes: list or "a,b,c" fixing the category order.
    Raises DataError when the data cannot be used (its .report holds what was found).
    """
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"source {src} does not exist")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", split):  # it names a folder inside --out
        raise DataError(f"--split must be a plain folder name such as train or valid, got {split!r}")
    fmt = fmt or detect_format(src)
    if fmt not in FORMATS:
        raise DataError(f"cannot tell the format of {src}: pass --format {{{','.join(FORMATS)}}}")
    if src.is_file() and fmt != "coco":
        raise DataError(f"--src {src} is a file: only --format coco takes a JSON file, {fmt} takes a folder")
    classes = parse_class_list(classes)
    classes_given = bool(classes)
    if single_class is not None and not single_class.strip():
        raise DataError("--single-class needs a class name, e.g. --single-class acne")
    if single_class and classes:
        raise DataError("--classes and --single-class contradict each other: --single-class maps every box to one "
                        "class; give one of them")
    options = {"single_class": single_class,
               "grade_regex": compile_one_group_regex(grade_from_filename, "--grade-from-filename"),
               "group_regex": compile_one_group_regex(group_from_filename, "--group-from-filename"),
               "group_by_name": read_group_csv(group_csv)}
    src_root = src.parent if src.is_file() else src
    if out.resolve() == src_root.resolve():
        raise DataError(f"--out {out} is the source folder: choose another folder, the source stays untouched")
    if src.is_dir() and is_inside(out, src_root):  # the source would hold the import; a second import would read it
        raise DataError(f"--out {out} lies inside the source {src_root}: choose a folder outside it, the source "
                        f"stays untouched")
    if problem := file_in_place_of_folder("--out", out):  # found now, not after every split is read
        raise DataError(problem)

    # Read every split (nothing is written before all of them are read and checked).
    read, declared_names, classes, unread, notes = read_source(fmt, src, src_root, split, classes, single_class)
    met = declared_names | {box[4] for records, _ in read.values() for r in records for box in r["boxes"] if box[4]}
    if classes_given and not single_class:
        refuse_mistyped_classes(classes, met, src)
    if single_class:
        classes = [single_class]
    elif classes is None:  # every name met, in every split: the category list is the same everywhere
        classes = sorted(met)
    spellings = {}
    for name in classes:
        spellings.setdefault(name.casefold(), []).append(name)
    clashing = [" and ".join(names) for names in spellings.values() if len(names) > 1]
    if clashing and not single_class:  # "Papule" and "papule" as two types: a typo, never two kinds of lesion
        raise DataError(f"class names that differ only in case would be separate types: {'; '.join(clashing)}. "
                        f"Spell each alike in the annotations (or map them all to one with --single-class)")

    report = {"format": fmt, "src": str(src), "out": None, "categories": classes, "not_read": unread, "splits": {},
              "options": {"split": split, "single_class": single_class, "grade_from_filename": grade_from_filename,
                          "group_from_filename": group_from_filename,
                          "group_csv": str(group_csv) if group_csv else None, "symlink": symlink}}
    checked = {}
    for name, (records, problems) in read.items():
        checked[name] = check_split(records, problems, classes, options)
        report["splits"][name] = split_summary(checked[name], problems)

    refuse_unusable(src, read, checked, classes, classes_given, report)
    refuse_other_categories_beside(out, checked, classes, report)

    replaced = splits_to_replace(out, [name for name, images in checked.items() if images], overwrite, report)
    sources = [src_root] + [record["path"] for records, _ in read.values() for record in records]
    for split_dir in replaced + [out / name for name in checked]:
        inside = next((path for path in sources if is_inside(path, split_dir)), None)
        if inside is not None:
            raise DataError(f"--out {out} would write {split_dir}, which holds the source {inside}: "
                            f"choose another --out, the source stays untouched", report)
    write_splits(out, {name: images for name, images in checked.items() if images}, classes, symlink, verbose)
    report["out"] = str(out)
    for summary in report["splits"].values():
        summary["src"] = str(src)
    report["notes"] = notes
    if not (out / "valid" / "annotations.json").is_file():  # found now, not when training starts
        report["notes"].append(f"no valid split in {out}: training validates on {out / 'valid'}; import one "
                               f"(e.g. --src SRC/valid --split valid, with the same --classes)")
    write_report(out, report)
    if verbose:
        print(format_report(report))
    return report


def refuse_mistyped_classes(classes, met, src):
    """DataError where --classes looks mistyped: a name that is not a class of the source but close to
    one ("Papules" for papules), whose boxes would be dropped as those of classes left out on purpose
    are. A name that resembles nothing stays: a category this source lacks (negatives of it, or a
    split imported alone that lacks a class another has)."""
    if not met:  # no box and no declared class: negatives only, as --classes allows
        return
    others = {other.casefold(): other for other in sorted(met - set(classes))}
    mistyped = {}
    for name in classes:
        close = [] if name in met else difflib.get_close_matches(name.casefold(), others, n=1, cutoff=0.8)
        if close:
            mistyped[name] = others[close[0]]
    if mistyped:  # all of them at once, not one per try
        meant = "; ".join(f"{name!r}: did you mean {other!r}?" for name, other in mistyped.items())
        raise DataError(f"--classes names classes that are not those of {src}: {meant} (its classes: "
                        f"{', '.join(sorted(met))})")


def refuse_other_categories_beside(out, checked, classes, report):
    """DataError where a split this import keeps in OUT (one it does not write) has other categories,
    or the same in another order: training refuses such a pair, and only after the import said done."""
    for name in imported_splits(out):
        if name in checked or not (out / name / "annotations.json").is_file():
            continue
        try:
            kept = [category["name"] for category in load_coco(out / name)["categories"]]
        except DataError:
            continue  # not readable: training's own check names it
        if kept != list(classes):
            raise DataError(f"{out / name} (an earlier import this one keeps) has the categories {kept}, and this "
                            f"import would write {list(classes)}: training refuses splits whose categories "
                            f"differ. Import the {name} split again too, or pass --classes {','.join(kept)}", report)


def imported_splits(out) -> dict:
    """{split: its summary} as OUT's import_report.json records them; {} where there is none."""
    try:
        return json.loads((out / "import_report.json").read_text(encoding="utf-8")).get("splits") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def write_report(out, report):
    """OUT/import_report.json. Splits imported one at a time: the record of a split imported
    before, and still there, stays."""
    for name, summary in imported_splits(out).items():
        if name not in report["splits"] and (out / name / "annotations.json").is_file():
            report["splits"][name] = summary
    with open(out / "import_report.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


def to_coco(images, classes):
    """The project COCO dict of one split."""
    category_ids = {name: i for i, name in enumerate(classes, 1)}
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in category_ids.items()]}
    for image_id, image in enumerate(images, 1):
        entry = {"id": image_id, "file_name": image["file_name"], "width": image["width"], "height": image["height"]}
        if image["grade"] is not None:
            entry["grade"] = image["grade"]
        if image["group"] is not None:
            entry["group"] = str(image["group"])
        coco["images"].append(entry)
        for x1, y1, x2, y2, name in image["boxes"]:
            w, h = round(x2 - x1, 3), round(y2 - y1, 3)
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": category_ids[name], "bbox": [round(x1, 3), round(y1, 3), w, h],
                                        "area": round(w * h, 3), "iscrowd": 0})
    return coco


def write_splits(out, splits, classes, symlink, verbose=False):
    """Write each split into a hidden folder in OUT, then swap them in once all are written: a run
    stopped partway (Ctrl-C, a full disk) leaves OUT as it was. The splits replaced were checked
    by splits_to_replace."""
    staged = {name: out / f".{name}.importing" for name in splits}
    out_existed = out.exists()
    try:
        for name, images in splits.items():
            if verbose:
                print(f"writing the {name} split: {len(images)} images", flush=True)
            shutil.rmtree(staged[name], ignore_errors=True)  # left by an import killed outright
            staged[name].mkdir(parents=True)
            for image in images:
                target = staged[name] / image["file_name"]
                if symlink:
                    target.symlink_to(image["path"].resolve())
                else:
                    shutil.copyfile(image["path"], target)
            with open(staged[name] / "annotations.json", "w", encoding="utf-8") as f:
                json.dump(to_coco(images, classes), f)
    except BaseException:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
        if not out_existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    for name, folder in staged.items():
        swap_in(folder, out / name)


def swap_in(written, target):
    """Put the folder `written` in the place of `target` (an earlier output, or nothing), by renames:
    the earlier output stays whole until the new one is complete."""
    if target.is_dir():
        old = target.parent / f".{target.name}.replaced"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        written.rename(target)
        # The import is complete now: an old folder that cannot be removed is said, not an error.
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
        if old.exists():
            print(f"warning: the earlier {target.name} split, replaced, could not be removed: delete {old} "
                  f"by hand", file=sys.stderr)
    else:
        written.rename(target)


def is_inside(path, folder):
    """Whether `path` is `folder` or lies under it, symlinks resolved or not."""
    return any(p.is_relative_to(f) for p in (path.absolute(), path.resolve())
               for f in (folder.absolute(), folder.resolve()))


def splits_to_replace(out, splits, overwrite, report):
    """The split folders in OUT that this import replaces: those of its splits that hold an earlier
    import. Without --overwrite that is refused; a folder that is not an import is never replaced.
    Other splits in OUT stay, so splits can be imported one at a time."""
    replaced, imported = [], imported_splits(out)
    for name in splits:
        split_dir = out / name
        if split_dir.exists() and not split_dir.is_dir():
            raise DataError(f"{split_dir} is a file, where this import would write its {name} split: choose "
                            f"another --out", report)
        if not split_dir.is_dir() or not any(split_dir.iterdir()):
            continue
        if not (split_dir / "annotations.json").is_file() or name not in imported:
            raise DataError(f"{split_dir} exists and is not an earlier import (an import lists its splits in "
                            f"{out / 'import_report.json'}): choose another --out", report)
        if not overwrite:
            raise DataError(f"{split_dir} holds an earlier import: pass --overwrite to replace it", report)
        if added := files_not_imported(split_dir):  # --overwrite replaces the folder whole: they would go
            raise DataError(f"{split_dir} holds {len(added)} file(s) that the earlier import did not write "
                            f"({', '.join(added[:5])}): move them out first, --overwrite replaces the whole folder",
                            report)
        replaced.append(split_dir)
    return replaced


def files_not_imported(split_dir) -> list:
    """Names in an imported split folder that its annotations.json does not list (a user's own files)."""
    try:
        listed = {image.get("file_name") for image in load_coco(split_dir)["images"]}
    except DataError:
        return []  # not readable as an import: splits_to_replace's own checks speak for it
    # Relative paths, at any depth: an import writes "sub/x.jpg" for a source file name with a folder.
    return sorted(relative for relative in (path.relative_to(split_dir).as_posix() for path in split_dir.rglob("*")
                                            if path.is_file() or path.is_symlink())
                  if relative not in listed | {"annotations.json"})


def read_split(data_dir, split):
    """A split of an imported data set (DATA/<split>/annotations.json), its structure checked
    (load_coco) and every image it lists present: found now, not when a long job first opens the
    image (a symlinked import whose source moved, a file deleted). Raises DataError."""
    path = Path(data_dir) / split / "annotations.json"
    if not path.is_file():
        raise DataError(f"{path} not found: import the data first (python -m train.data import ...)")
    coco = load_coco(path)
    if not coco["images"]:
        raise DataError(f"{path} lists no image: import the data again")
    missing = [image["file_name"] for image in coco["images"]
               if not isinstance(image["file_name"], str) or not (path.parent / image["file_name"]).is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) that {path} lists are missing, e.g. "
                        f"{path.parent / str(missing[0])}: import the data again")
    return coco


def load_coco(path):
    """Read a project COCO file (a split folder or its annotations.json) and check its structure.

    Returns the dict; raises DataError naming the file and what is wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.json"
    try:
        with open(path, encoding="utf-8-sig") as f:
            coco = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = "nested too deeply to be a COCO file" if isinstance(error, RecursionError) else error
        raise DataError(f"cannot read {path}: {reason}") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise DataError(f"{path} is not a COCO file: it needs the lists images, annotations and categories")
    required = {"images": ("id", "file_name", "width", "height"),
                "annotations": ("id", "image_id", "category_id", "bbox"), "categories": ("id", "name")}
    for section, keys in required.items():
        for entry in coco[section]:
            if not isinstance(entry, dict) or any(key not in entry for key in keys):
                raise DataError(f"{path}: an entry of {section} lacks one of {', '.join(keys)}: {entry!r:.200}")
    image_ids = {image["id"] for image in coco["images"]}
    category_ids = {category["id"] for category in coco["categories"]}
    bad = [a["id"] for a in coco["annotations"]
           if a["image_id"] not in image_ids or a["category_id"] not in category_ids
           or not isinstance(a["bbox"], list) or len(a["bbox"]) != 4]
    if len(image_ids) != len(coco["images"]):
        raise DataError(f"{path}: image ids are not unique")
    if bad:
        raise DataError(f"{path}: annotations {bad[:10]} name an unknown image or category, "
                        f"or have no [x, y, w, h] bbox")
    return coco


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("import", help="import COCO / VOC / YOLO data into the project's COCO layout",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=FORMATS, help="source format (guessed from the files when left out)")
    p.add_argument("--src", required=True, help="source folder (or, for COCO, one JSON file)")
    p.add_argument("--out", required=True, help="output folder: OUT/<split>/annotations.json + images")
    p.add_argument("--split", default="train",
                   help="split name when SRC has no train/valid/test folders (default train)")
    p.add_argument("--classes",
                   help="a,b,c: the classes to import, in category order; boxes of other classes are dropped "
                        "(YOLO without classes.txt or data.yaml: the names of indices 0, 1, 2 ...)")
    p.add_argument("--single-class", metavar="NAME",
                   help="map every class to NAME (e.g. ACNE04, whose labels are grades)")
    p.add_argument("--grade-from-filename", metavar="REGEX",
                   help=r"regex with one group giving the 0..3 grade, e.g. 'levle(\d)_'")
    p.add_argument("--group-from-filename", metavar="REGEX",
                   help="regex with one group giving the image's group (e.g. face part)")
    p.add_argument("--group-csv", metavar="FILE",
                   help="CSV file_name,group (source file names, no folders); wins over --group-from-filename")
    link = p.add_mutually_exclusive_group()
    link.add_argument("--copy", dest="symlink", action="store_false", help="copy the images (default)")
    link.add_argument("--symlink", dest="symlink", action="store_true", help="symlink the images instead of copying")
    p.set_defaults(symlink=False)  # else the last store_false/store_true added decides the default
    p.add_argument("--overwrite", action="store_true", help="replace the splits of an earlier import in OUT that "
                                                            "this import writes (other splits stay)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # A file name that is not UTF-8 (a latin-1 "negé.jpg") printed to a UTF-8 terminal: escaped, not a
    # UnicodeEncodeError after the data was written.
    sys.stdout.reconfigure(errors="backslashreplace")
    try:
        import_dataset(args.format, args.src, args.out, split=args.split, classes=args.classes,
                       single_class=args.single_class, grade_from_filename=args.grade_from_filename,
                       group_from_filename=args.group_from_filename, group_csv=args.group_csv,
                       symlink=args.symlink, overwrite=args.overwrite, verbose=True)
    except DataError as error:
        if error.report:
            print(format_report(error.report))
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, no permission, ...: the message names the file
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} is as it was (a split is written whole, or not at all)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
