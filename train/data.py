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
    VOC              images with the .xml beside them (like ACNE04), or Annotations/ + JPEGImages/.
                     Coordinates are PASCAL's 1-based pixel indices: x = xmin - 1, width = xmax - xmin + 1.
    COCO             one JSON per split: <split>/annotations.json, <split>/_annotations.coco.json (Roboflow),
                     or annotations/instances_<split>.json with the images in <split>/ or images/<split>/.
    YOLO             <split>/images + <split>/labels, images/<split> + labels/<split>, or the .txt beside the
                     images; lines "class cx cy w h" normalised to 0..1. Class names come from --classes,
                     classes.txt or data.yaml (names:).

Every image is decoded once, so a truncated file is found here and not in the middle of a training run.
Problems are repaired where that loses nothing and reported (see PROBLEMS); data that cannot be used at
all ends the command with one line on stderr and exit code 2.
"""

import argparse
import csv
import json
import math
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from train import file_in_place_of_folder
from trouble.images import ACCEPTED_FORMATS, MIN_SIDE, PHOTO_SUFFIXES, photos_in_subfolders

# Files looked at as images. Those of other formats than TRAINABLE_FORMATS are named and skipped
# rather than passed over in silence.
IMAGE_EXTENSIONS = (*PHOTO_SUFFIXES, ".bmp", ".tif", ".tiff", ".gif")
# What both readers take: mmdet's loader (OpenCV) in training, the inference core (PIL) in evaluation
# and serving. OpenCV reads no HEIC; the core refuses BMP, TIFF and GIF.
TRAINABLE_FORMATS = ACCEPTED_FORMATS - {"HEIF"}
# Other usual names of a split → the name it is written under (training validates on "valid").
OUTPUT_SPLIT_NAMES = {"val": "valid", "validation": "valid", "val2017": "valid", "train2017": "train",
                      "test2017": "test"}
SPLIT_FOLDERS = ("train", "valid", "test", *OUTPUT_SPLIT_NAMES)
COCO_JSON_NAMES = ("annotations.json", "_annotations.coco.json")
FORMATS = ("coco", "voc", "yolo")
NAMES_SHOWN = 10  # file names printed per problem; the JSON report holds them all

# Every problem the importer reports, in the order it is printed. Box problems count boxes,
# the others count images or files.
PROBLEMS = {
    "bad_annotation_file": "annotation file that cannot be parsed (skipped, with its image)",
    "shared_label_file": "YOLO label file that photos of one name share, as a.jpg and a.png (those photos "
                         "skipped: it cannot say whose boxes it holds)",
    "missing_image": "annotation names an image that is not there (skipped, with its boxes)",
    "unread_subfolder": "subfolder with images that this format's layout does not include (not imported: "
                        "import it on its own, or move its files up)",
    "unreadable_subfolder": "subfolder that cannot be read (no permission: any images in it are not imported)",
    "unreadable_image": "unreadable or truncated image (skipped)",
    "unsupported_format": "image in a format the model cannot be trained and served on (skipped: convert "
                          "it to PNG or JPEG)",
    "too_small": f"image under {MIN_SIDE}x{MIN_SIDE} pixels, which the model server refuses (skipped)",
    "size_mismatch": "image size differs from the annotation (the real size is used)",
    "exif_rotated": "image carries an EXIF rotation (size and boxes written for the photo as displayed; check them)",
    "unknown_class": "box of an unknown class (dropped)",
    "invalid_box": "box with missing, non-numeric or infinite coordinates (dropped)",
    "orphan_box": "box of an image the annotation file does not list (dropped)",
    "box_clipped": "box reaching outside the image (clipped to it)",
    "empty_box": "box with zero or negative area after clipping (dropped)",
    "crowd_box": "COCO crowd region (dropped: the project has no crowd regions)",
    "difficult_box": "VOC box marked difficult (imported as an ordinary box; VOC's scoring leaves these out)",
    "image_listed_twice": "image listed twice in one COCO file (imported once, with the boxes of both entries)",
    "duplicate_name": "duplicate file name (kept under a unique name)",
    "no_annotation_file": "image without an annotation file (kept as a negative)",
    "no_boxes": "image without boxes (kept as a negative)",
    "no_grade": "no grade 0..3 found by --grade-from-filename (stored without grade)",
    "bad_grade": "grade that is not 0..3 (stored without grade)",
    "no_group": "no group from --group-from-filename / --group-csv (stored without group)",
}


class DataError(Exception):
    """The data cannot be used; the command prints the message and exits with code 2."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report  # what was found before giving up, to print as a summary


def note(problems, kind, name, count=1):
    """Record `count` occurrences of problem `kind` in file `name`."""
    entry = problems.setdefault(kind, {"count": 0, "files": []})
    entry["count"] += count
    if entry["files"][-1:] != [name]:  # box problems of one image come one after another
        entry["files"].append(name)


def image_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# Folders of the VOC layout itself, beside the images: not subfolders of images left unread.
VOC_LAYOUT_FOLDERS = ("Annotations", "JPEGImages", "images", "ImageSets", "SegmentationClass", "SegmentationObject")


def note_unread_subfolders(folder, src, problems, read_elsewhere=()):
    """VOC and YOLO read the images of one folder per split; images in its subfolders (say one per
    patient) would be left out in silence. Each such subfolder is named with its number of images."""
    if not folder.is_dir():
        return
    for name, count in photos_in_subfolders(folder, IMAGE_EXTENSIONS, skip=read_elsewhere).items():
        where = f"{(folder / name).relative_to(src)}/"
        if count is None:
            note(problems, "unreadable_subfolder", where)
        else:
            note(problems, "unread_subfolder", f"{where} ({count} image{'s' * (count > 1)})")


def new_record(path, source, boxes=(), annotation_size=None, grade=None, group=None):
    """One image as read from the source. Boxes are (x1, y1, x2, y2, class name or None) in pixels,
    or, for YOLO, (cx, cy, w, h, name) normalised to the image size (`normalised` is set)."""
    return {"path": path, "source": source, "name": Path(source).name, "boxes": list(boxes),
            "annotation_size": annotation_size, "grade": grade, "group": group, "normalised": False}


# ---------------------------------------------------------------- finding the splits

def split_folders(src):
    return [name for name in SPLIT_FOLDERS if (src / name).is_dir()]


def looks_like_coco_json(path):
    return path.name in COCO_JSON_NAMES or path.name.startswith("instances_") or path.parent.name == "annotations"


def detect_format(src):
    """Guess the format from the files under SRC (three levels deep).

    A JSON named like a COCO file wins, then VOC's XML, then YOLO's txt; any other JSON (one COCO file
    under a name of its own) comes last, so a stray info.json beside YOLO labels does not decide."""
    if src.is_file():
        return "coco" if src.suffix == ".json" else None
    found = Counter()
    for path in list(src.glob("*")) + list(src.glob("*/*")) + list(src.glob("*/*/*")):
        if path.suffix == ".json" and path.name != "import_report.json":
            found["coco" if looks_like_coco_json(path) else "other json"] += 1
        elif path.suffix == ".xml":
            found["voc"] += 1
        elif path.suffix == ".txt" and path.name != "classes.txt" and not path.name.startswith("README"):
            found["yolo"] += 1
    for fmt in FORMATS:
        if found[fmt]:
            return fmt
    return "coco" if found["other json"] else None


def coco_json_in(folder):
    for name in COCO_JSON_NAMES:
        if (folder / name).is_file():
            return folder / name
    jsons = [p for p in sorted(folder.glob("*.json")) if p.name != "import_report.json"]
    if len(jsons) > 1:
        raise DataError(f"{folder} holds several JSON files ({', '.join(p.name for p in jsons)}): "
                        f"pass the one to import as --src")
    return jsons[0] if jsons else None


def coco_splits(src, default_split):
    """[(split name, annotation JSON)]"""
    if src.is_file():
        return [(default_split, src)]
    splits = [(name, coco_json_in(src / name)) for name in split_folders(src)]
    splits = [(name, path) for name, path in splits if path]
    if not splits and (src / "annotations").is_dir():  # annotations/instances_train2017.json
        for path in sorted((src / "annotations").glob("*.json")):
            splits.append((path.stem.removeprefix("instances_"), path))
    if not splits and coco_json_in(src):
        splits = [(default_split, coco_json_in(src))]
    return splits


def yolo_splits(src, default_split):
    """[(split name, images folder, labels folder)]"""
    if split_folders(src):
        folders = [(name, src / name) for name in split_folders(src)]
    elif (src / "images").is_dir() and split_folders(src / "images"):  # images/train + labels/train
        return [(name, src / "images" / name, src / "labels" / name) for name in split_folders(src / "images")]
    else:
        folders = [(default_split, src)]
    return [(name, folder / "images", folder / "labels") if (folder / "images").is_dir() else (name, folder, folder)
            for name, folder in folders]


def voc_splits(src, default_split):
    """[(split name, folder)]"""
    return [(name, src / name) for name in split_folders(src)] or [(default_split, src)]


def with_output_split_names(read, src):
    """{source split name: ...} → {output split name: ...}; two source splits may not share one."""
    renamed, source_of = {}, {}
    for name, value in read.items():
        out_name = OUTPUT_SPLIT_NAMES.get(name, name)
        if out_name in renamed:
            raise DataError(f"{src} has splits '{source_of[out_name]}' and '{name}', which would both be "
                            f"written as '{out_name}': keep one of them")
        renamed[out_name], source_of[out_name] = value, name
    return renamed


# ---------------------------------------------------------------- reading one split

def read_voc_split(folder, src):
    """Records and problems of one VOC split: .xml beside the images, or Annotations/ + JPEGImages/."""
    problems = {}
    if (folder / "Annotations").is_dir():
        xml_dir = folder / "Annotations"
        image_dir = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else folder / "images"
    else:
        xml_dir = image_dir = folder
    images = image_files(image_dir) if image_dir.is_dir() else []
    note_unread_subfolders(image_dir, src, problems, read_elsewhere=VOC_LAYOUT_FOLDERS)
    images_by_name = {p.name: p for p in images}
    images_by_stem = {}
    for path in images:
        images_by_stem.setdefault(path.stem, path)
    records, claimed = [], set()

    parsed = []
    for xml_path in sorted(xml_dir.glob("*.xml")):
        try:
            root = ET.parse(xml_path).getroot()
            if root.tag != "annotation":
                raise ValueError(f"root element is <{root.tag}>, not <annotation>")
        except (ET.ParseError, ValueError, OSError) as error:
            note(problems, "bad_annotation_file", f"{xml_path.relative_to(src)} ({error})")
            claimed.add(images_by_stem.get(xml_path.stem))  # its image is skipped, not made a negative
            continue
        # The image of the .xml's own name (its <filename> decides between a.jpg and a.png); only
        # an .xml without one falls back on the image its <filename> names.
        named = images_by_name.get(Path(root.findtext("filename") or "").name)
        own = named if named is not None and named.stem == xml_path.stem else images_by_stem.get(xml_path.stem)
        parsed.append((own is None, xml_path, root, own or named))

    # The .xml files with an image of their own name are matched first, so that a <filename> left
    # over from a renamed file never takes a photo from the .xml beside it (its boxes would move).
    for _, xml_path, root, image_path in sorted(parsed, key=lambda item: item[:2]):
        xml_source = str(xml_path.relative_to(src))
        if image_path is None:
            note(problems, "missing_image", f"{xml_source} ({root.findtext('filename')}; "
                                            f"{len(root.findall('object'))} boxes)")
            continue
        if image_path in claimed:
            note(problems, "bad_annotation_file", f"{xml_source} (a second annotation file for {image_path.name})")
            continue
        claimed.add(image_path)
        source = str(image_path.relative_to(src))
        boxes = []
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            try:
                xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{key}"))
                                          for key in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):  # tag missing (None) or not a number
                note(problems, "invalid_box", source)
                continue
            if (obj.findtext("difficult") or "").strip() == "1":
                note(problems, "difficult_box", source)
            boxes.append((xmin - 1, ymin - 1, xmax, ymax, name))  # 1-based inclusive pixels -> edges
        try:
            size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
        except (TypeError, ValueError):
            size = None
        records.append(new_record(image_path, source, boxes, annotation_size=size))

    for image_path in images:
        if image_path not in claimed:
            source = str(image_path.relative_to(src))
            records.append(dict(new_record(image_path, source), no_annotation_file=True))  # noted if it is kept
    records.sort(key=lambda record: record["source"])
    return records, problems


def find_coco_image(file_name, json_path, split):
    """COCO file_name is relative to a folder that depends on the exporter; try the usual ones."""
    json_dir = json_path.parent
    for folder in (json_dir, json_dir / "images", json_dir.parent / split, json_dir.parent / "images" / split,
                   json_dir.parent / "images", json_dir.parent):
        for candidate in (folder / file_name, folder / Path(file_name).name):
            if candidate.is_file():
                return candidate
    return None


def coco_categories(entries: list) -> dict:
    """{id: name} of a COCO file's categories; ValueError naming an entry without a usable id or name,
    or an id used twice (the second name took the first one's boxes, in silence)."""
    categories = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), (int, str)) or isinstance(
                entry.get("id"), bool):
            raise ValueError(f"a category needs an id (a number) and a name: {entry!r:.200}")
        name = entry.get("name")
        if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
            raise ValueError(f"category {entry['id']} has no name: {entry!r:.200}")
        if entry["id"] in categories:
            raise ValueError(f"category id {entry['id']} is used twice ({categories[entry['id']]!r} and {name!r})")
        categories[entry["id"]] = str(name)
    return categories


def read_coco_split(json_path, src, split):
    """Records, problems and the category names the file declares."""
    problems = {}
    json_source = str(json_path.relative_to(src))
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"a COCO file is a JSON object with images, annotations and categories, not a "
                             f"{type(data).__name__}")
        images, annotations = data["images"], data.get("annotations") or []  # null: no boxes
        if not all(isinstance(value, list) for value in (images, annotations, data["categories"])):
            raise ValueError("images, annotations and categories must each be a list")
        categories = coco_categories(data["categories"])
        incomplete = [image for image in images
                      if not isinstance(image, dict) or not isinstance(image.get("id"), (int, str))
                      or isinstance(image.get("id"), bool) or not isinstance(image.get("file_name"), str)]
        if incomplete:
            raise ValueError(f"an image entry needs an id (a number) and a file_name: {incomplete[0]!r:.200}")
        image_entries = {image["id"]: image for image in images}
        if len(image_entries) != len(images):
            repeated = [i for i, n in Counter(image["id"] for image in images).items() if n > 1]
            raise ValueError(f"image ids {repeated[:10]} are used by more than one image")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as error:
        reason = (f"missing key {error}" if isinstance(error, KeyError)
                  else "nested too deeply to be a COCO file" if isinstance(error, RecursionError) else str(error))
        note(problems, "bad_annotation_file", f"{json_source} ({reason})")
        return [], problems, []

    # Roboflow adds a super-category (id 0, named after the project) that no box uses: leave it out.
    used_ids = {a.get("category_id") for a in annotations
                if isinstance(a, dict) and isinstance(a.get("category_id"), Hashable)}
    supers = {str(c.get("supercategory")) for c in data["categories"]}
    declared = [name for cid, name in categories.items() if cid in used_ids or name not in supers]

    boxes_by_image = {image_id: [] for image_id in image_entries}
    for ann in annotations:
        image = image_entries.get(ann.get("image_id")) \
            if isinstance(ann, dict) and isinstance(ann.get("image_id"), Hashable) else None
        if image is None:
            ann_id = ann.get("id") if isinstance(ann, dict) else repr(ann)
            note(problems, "orphan_box", f"{json_source} (annotation {ann_id} names no image)")
            continue
        name = image["file_name"]
        if ann.get("iscrowd") in (1, True):  # "0" as text is not a crowd region
            note(problems, "crowd_box", name)
            continue
        try:
            if not isinstance(ann["bbox"], (list, tuple)):  # a string "1234" would read as 1, 2, 3, 4
                raise TypeError("bbox is not a list")
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: 10**400 in the JSON
            note(problems, "invalid_box", name)
            continue
        if not isinstance(ann.get("category_id"), Hashable) or ann.get("category_id") not in categories:
            note(problems, "unknown_class", f"{name} (category_id {ann.get('category_id')})")
            continue
        boxes_by_image[image["id"]].append((x, y, x + w, y + h, categories[ann["category_id"]]))

    records, record_of_path = [], {}
    for image_id, image in image_entries.items():
        path = find_coco_image(image["file_name"], json_path, split)
        if path is None:
            note(problems, "missing_image", f"{image['file_name']} ({len(boxes_by_image[image_id])} boxes)")
            continue
        if path in record_of_path:  # two entries, one photo: as two images, each would teach the
            first_record, first_id = record_of_path[path]  # other's lesions as background
            first_record["boxes"] += boxes_by_image[image_id]
            note(problems, "image_listed_twice", f"{image['file_name']} (image ids {first_id} and {image_id})")
            continue
        try:
            size = (int(image["width"]), int(image["height"]))
        except (KeyError, TypeError, ValueError):
            size = None
        grade = image.get("grade")
        if grade is not None and not (isinstance(grade, int) and not isinstance(grade, bool) and 0 <= grade <= 3):
            note(problems, "bad_grade", f"{image['file_name']} (grade {grade!r})")
            grade = None
        record = new_record(path, image["file_name"], boxes_by_image[image_id], annotation_size=size,
                            grade=grade, group=image.get("group"))
        record_of_path[path] = (record, image_id)
        records.append(record)
    records.sort(key=lambda record: record["source"])
    return records, problems, declared


def read_yolo_names(src, split_dirs):
    """Class names from classes.txt or data.yaml (names: list or {index: name}), or None."""
    folders = [src] + [d for d in split_dirs if d != src]
    for folder in folders:
        if (folder / "classes.txt").is_file():
            try:
                text = (folder / "classes.txt").read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{folder / 'classes.txt'} is not UTF-8 text ({error}): save it as UTF-8") from None
            lines = [line.strip() for line in text.splitlines()]
            while lines and not lines[-1]:
                lines.pop()
            blank = [number for number, line in enumerate(lines, 1) if not line]
            if blank:  # line N names class N-1: dropping a blank line would shift every class after it
                raise DataError(f"{folder / 'classes.txt'} has blank lines ({', '.join(map(str, blank[:10]))}): "
                                f"line N names class index N-1, so remove them or name their classes")
            return check_unique_names(lines, folder / "classes.txt")
    for folder in folders:
        for yaml_path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            try:
                import yaml  # PyYAML comes with mmengine
                content = yaml.safe_load(yaml_path.read_text()) or {}
            except Exception as error:  # any YAML or import problem: say which file
                raise DataError(f"cannot read class names from {yaml_path}: {error}") from None
            if not isinstance(content, dict) or "names" not in content:  # some other YAML file
                continue
            names = content["names"]
            if isinstance(names, dict):
                names = yolo_names_by_index(names, yaml_path)
            if not isinstance(names, list):  # found, but unusable: said, not "put data.yaml (names:) there"
                raise DataError(f"{yaml_path}: names must be a list, or a mapping of class index to name; "
                                f"got {names!r:.100}")
            return check_unique_names([None if n is None else str(n) for n in names], yaml_path)
    return None


def check_unique_names(names: list, source) -> list:
    """Class names from a file, refused when one is there twice (two indices, one category)."""
    repeated = sorted({name for name in names if name is not None and names.count(name) > 1})
    if repeated:
        raise DataError(f"{source} names a class twice: {repeated}")
    return names


def yolo_names_by_index(names: dict, yaml_path) -> list:
    """data.yaml's names as {index: name} → a list by index; a missing index is None (its boxes are
    an unknown class). Sorting the keys instead would relabel boxes: {0: a, 2: c} made class 1 "c"."""
    try:
        by_index = {int(key): value for key, value in names.items()}
    except (TypeError, ValueError):
        raise DataError(f"{yaml_path}: names must be a list, or a mapping of class index to name; got keys "
                        f"{sorted(map(str, names))[:10]}") from None
    if any(index < 0 for index in by_index) or len(by_index) != len(names):
        raise DataError(f"{yaml_path}: names has negative or repeated class indices: {sorted(map(str, names))[:10]}")
    return [by_index.get(index) for index in range(max(by_index, default=-1) + 1)]


def read_yolo_split(images_dir, labels_dir, src, names, single_class):
    """Records and problems of one YOLO split; boxes stay normalised until the image size is known."""
    problems = {}
    records = []
    images = image_files(images_dir) if images_dir.is_dir() else []
    note_unread_subfolders(images_dir, src, problems)
    photos_of_stem = Counter(image_path.stem for image_path in images)
    if labels_dir.is_dir():
        for label_path in sorted(labels_dir.glob("*.txt")):
            if label_path.name != "classes.txt" and label_path.stem not in photos_of_stem:
                try:
                    lines = sum(1 for line in label_path.read_text(errors="replace").splitlines() if line.strip())
                    boxes = f"{lines} boxes"
                except OSError as error:  # named with the photo it lacks, not the end of the import
                    boxes = f"unreadable: {error.strerror or error}"
                note(problems, "missing_image", f"{label_path.relative_to(src)} (no photo named "
                                                f"{label_path.stem}.*; {boxes})")
    for image_path in images:
        source = str(image_path.relative_to(src))
        label_path = labels_dir / f"{image_path.stem}.txt"
        if label_path.is_file() and photos_of_stem[image_path.stem] > 1:
            note(problems, "shared_label_file", f"{source} ({label_path.relative_to(src)})")
            continue
        if not label_path.is_file():
            records.append(dict(new_record(image_path, source), no_annotation_file=True))  # noted if it is kept
            continue
        boxes = []
        try:
            for line_number, line in enumerate(label_path.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 5:
                    raise ValueError(f"line {line_number}: {len(fields)} values, expected 'class cx cy w h'")
                try:
                    index, values = int(float(fields[0])), [float(v) for v in fields[1:]]  # "0.0": class 0
                    if index != float(fields[0]):
                        raise ValueError
                except (ValueError, OverflowError):
                    raise ValueError(f"line {line_number}: not a class index and four numbers: "
                                     f"{line.strip()!r}") from None
                if not all(math.isfinite(v) for v in values):
                    raise ValueError(f"line {line_number}: a value that is not a finite number: {line.strip()!r}")
                if max(values) > 1.5:  # a little above 1 is rounding, clipped later; pixels are far above
                    raise ValueError(f"line {line_number}: values above 1 ({line.strip()!r}): YOLO gives boxes "
                                     f"as fractions of the image size, and these look like pixels")
                if names is None:  # no names known: only possible with --single-class
                    boxes.append((*values, single_class))
                elif 0 <= index < len(names) and names[index] is not None:
                    boxes.append((*values, names[index]))
                else:
                    note(problems, "unknown_class", f"{source} (class index {index})")
        except (ValueError, OSError, UnicodeDecodeError) as error:
            note(problems, "bad_annotation_file", f"{label_path.relative_to(src)} ({error})")
            continue
        record = new_record(image_path, source, boxes)
        record["normalised"] = True
        records.append(record)
    return records, problems


# ---------------------------------------------------------------- checking images and boxes

def read_image_size(path):
    """Decode the whole image and return (stored width, stored height, exif orientation), or an error text
    (starting with "format" for a readable image in a format outside TRAINABLE_FORMATS, "size" for one
    too small to serve)."""
    try:
        with Image.open(path) as image:
            if image.format not in TRAINABLE_FORMATS:
                return f"format {image.format}"
            width, height = image.size
            if min(width, height) < MIN_SIDE:
                return f"size {width}x{height}"
            orientation = image.getexif().get(0x0112, 1)
            # JPEG: decode at 1/8 scale, which still reads every byte
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
        return width, height, orientation
    except Exception as error:  # a broken file can make a decoder raise anything: the image is unreadable
        return f"{type(error).__name__}: {error}"


def turn_box_upright(box, orientation, stored_width, stored_height):
    """A box (x1, y1, x2, y2) in stored pixels → the same box on the photo as displayed (EXIF applied),
    the frame mmdet's loader (OpenCV) and the inference core (trouble.images.upright_rgb) both read."""
    w, h = stored_width, stored_height
    to_displayed = {  # stored point (x, y) → displayed point, per EXIF orientation
        2: lambda x, y: (w - x, y), 3: lambda x, y: (w - x, h - y), 4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x), 6: lambda x, y: (h - y, x), 7: lambda x, y: (h - y, w - x),
        8: lambda x, y: (y, w - x)}[orientation]
    (ax, ay), (bx, by) = to_displayed(box[0], box[1]), to_displayed(box[2], box[3])
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def check_split(records, problems, classes, options):
    """Check images and boxes of one split; return the image records to write, in order.

    Unreadable images are skipped, boxes clipped or dropped, names made unique, grade and
    group filled in; every change is noted in `problems`.
    """
    class_set = set(classes)
    with ThreadPoolExecutor(max_workers=4) as pool:  # decoding releases the GIL
        sizes = list(pool.map(read_image_size, [record["path"] for record in records]))

    kept, used_names = [], set()
    for record, size in zip(records, sizes):
        if isinstance(size, str):
            kind = {"format": "unsupported_format", "size": "too_small"}.get(size.split()[0], "unreadable_image")
            note(problems, kind, f"{record['source']} ({size})")
            continue
        if record.get("no_annotation_file"):  # an image that is kept, not one skipped above
            note(problems, "no_annotation_file", record["source"])
        width, height, turn = displayed_size(record, size, problems)
        boxes = checked_boxes(record, width, height, turn, class_set, options["single_class"], problems)
        grade = grade_of(record, options["grade_regex"], problems)
        group = group_of(record, options["group_regex"], options["group_by_name"], problems)
        name = unique_name(record, used_names, problems)
        kept.append({"path": record["path"], "file_name": name, "width": width, "height": height,
                     "boxes": boxes, "grade": grade, "group": group})
    return kept


def displayed_size(record, size, problems):
    """The photo's (width, height) as displayed, and the turn its boxes need to get there:
    (orientation, stored width, stored height) for turn_box_upright, or None.

    Training and serving both see the photo as displayed (EXIF orientation applied), so sizes and
    boxes are written for it. Boxes are taken as drawn on the displayed photo (what annotation
    tools show) unless the annotation's size is the stored one of a photo turned by 90 degrees.
    """
    source = record["source"]
    stored_width, stored_height, orientation = size
    orientation = orientation if orientation in range(2, 9) else 1
    width, height = (stored_height, stored_width) if orientation >= 5 else (stored_width, stored_height)
    drawn_on_stored = orientation >= 5 and width != height and record["annotation_size"] == (
        stored_width, stored_height)
    if orientation != 1:
        how = "boxes turned from the stored pixels" if drawn_on_stored else "boxes taken as drawn on it"
        note(problems, "exif_rotated", f"{source} (orientation {orientation}, displayed {width}x{height}; {how})")
    elif record["annotation_size"] and record["annotation_size"] != (width, height):
        ann_w, ann_h = record["annotation_size"]
        note(problems, "size_mismatch", f"{source} (annotation {ann_w}x{ann_h}, image {width}x{height})")
    turn = (orientation, stored_width, stored_height) if drawn_on_stored else None
    return width, height, turn


def checked_boxes(record, width, height, turn, class_set, single_class, problems):
    """The record's boxes as (x1, y1, x2, y2, class name) in pixels of the displayed photo (see
    displayed_size for width, height and turn), clipped to it; a box that cannot be used is dropped
    and noted in `problems`."""
    source = record["source"]
    boxes = []
    for x1, y1, x2, y2, name in record["boxes"]:
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):  # float() reads "nan" and "inf"
            note(problems, "invalid_box", source)
            continue
        if record["normalised"]:  # YOLO centre and size, 0..1
            x1, y1, x2, y2 = ((x1 - x2 / 2) * width, (y1 - y2 / 2) * height,
                              (x1 + x2 / 2) * width, (y1 + y2 / 2) * height)
        elif turn is not None:
            x1, y1, x2, y2 = turn_box_upright((x1, y1, x2, y2), *turn)
        if single_class:
            name = single_class
        elif name not in class_set:
            note(problems, "unknown_class", f"{source} ({name or 'no name'})")
            continue
        clipped = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
        if clipped != (x1, y1, x2, y2):
            note(problems, "box_clipped", source)
        x1, y1, x2, y2 = clipped
        if x2 <= x1 or y2 <= y1:
            note(problems, "empty_box", source)
            continue
        boxes.append((x1, y1, x2, y2, name))
    if not boxes:
        note(problems, "no_boxes", source)
    return boxes


def grade_of(record, grade_regex, problems):
    """The record's severity grade 0..3: from its file name with --grade-from-filename, else as read."""
    if not grade_regex:
        return record["grade"]
    match = grade_regex.search(record["name"])
    text = match.group(1) if match else None
    grade = int(text) if text in ("0", "1", "2", "3") else None  # isdigit() also takes "²"
    if grade is None:
        note(problems, "no_grade", record["source"])
    return grade


def group_of(record, group_regex, group_by_name, problems):
    """The record's image group: from --group-csv, else its file name with --group-from-filename,
    else as read."""
    if not (group_regex or group_by_name):
        return record["group"]
    match = group_regex.search(record["name"]) if group_regex else None
    group = group_by_name.get(record["name"], match.group(1) if match else None)
    if group is None:
        note(problems, "no_group", record["source"])
    return group


def unique_name(record, used_names, problems):
    """The record's file name, numbered (photo_2.jpg) where used_names holds it already; the name
    is added to used_names."""
    name = record["name"]
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 1
    while name.lower() in used_names:  # lower: the names must differ on case-insensitive disks too
        number += 1
        name = f"{stem}_{number}{suffix}"
    if name != record["name"]:
        note(problems, "duplicate_name", f"{record['source']} (written as {name})")
    used_names.add(name.lower())
    return name


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


def split_summary(images, problems):
    per_class = Counter(box[4] for image in images for box in image["boxes"])
    summary = {"images": len(images), "boxes": sum(per_class.values()),
               "boxes_per_class": dict(sorted(per_class.items()))}
    grades = Counter(image["grade"] for image in images if image["grade"] is not None)
    if grades:
        summary["grades"] = {str(g): n for g, n in sorted(grades.items())}
    groups = Counter(str(image["group"]) for image in images if image["group"] is not None)
    if groups:
        summary["groups"] = dict(sorted(groups.items()))
    summary["problems"] = {kind: {"description": PROBLEMS[kind], **problems[kind]}
                           for kind in PROBLEMS if kind in problems}
    return summary


def format_report(report):
    """The readable summary printed by the command."""
    lines = [f"{report['format']} data from {report['src']}",
             f"categories: {', '.join(report['categories']) or '(none)'}"]
    for split, summary in report["splits"].items():
        per_class = ", ".join(f"{name} {n}" for name, n in summary["boxes_per_class"].items())
        earlier = summary.get("src", report["src"]) != report["src"]
        lines.append(f"{split}: {summary['images']} images, {summary['boxes']} boxes"
                     + (f" ({per_class})" if per_class else "")
                     + (f" (imported earlier from {summary['src']})" if earlier else ""))
        if "grades" in summary:
            lines.append("  grades: " + ", ".join(f"{g}: {n}" for g, n in summary["grades"].items()))
        if "groups" in summary:
            lines.append("  groups: " + ", ".join(f"{g}: {n}" for g, n in summary["groups"].items()))
        for kind, problem in summary["problems"].items():
            files, count = problem["files"], problem["count"]
            shown = "; ".join(files[:NAMES_SHOWN])
            if len(files) > NAMES_SHOWN:
                shown += f"; and {len(files) - NAMES_SHOWN} more"
            where = f"{count} in {len(files)} files" if count != len(files) else f"{count}"
            lines.append(f"  ! {problem['description']}: {where}: {shown}")
    if report.get("out"):
        lines.append(f"written to {report['out']} (report: {Path(report['out']) / 'import_report.json'})")
    return "\n".join(lines)


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
        with open(path, newline="", encoding="utf-8") as f:
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
    read, declared_names, classes = read_source(fmt, src, src_root, split, classes, single_class)
    if single_class:
        classes = [single_class]
    elif classes is None:  # every name met, in every split: the category list is the same everywhere
        classes = sorted(declared_names | {box[4] for records, _ in read.values() for r in records
                                           for box in r["boxes"] if box[4]})
    spellings = {}
    for name in classes:
        spellings.setdefault(name.casefold(), []).append(name)
    clashing = [" and ".join(names) for names in spellings.values() if len(names) > 1]
    if clashing and not single_class:  # "Papule" and "papule" as two types: a typo, never two kinds of lesion
        raise DataError(f"class names that differ only in case would be separate types: {'; '.join(clashing)}. "
                        f"Spell each alike in the annotations (or map them all to one with --single-class)")

    report = {"format": fmt, "src": str(src), "out": None, "categories": classes, "splits": {},
              "options": {"split": split, "single_class": single_class, "grade_from_filename": grade_from_filename,
                          "group_from_filename": group_from_filename,
                          "group_csv": str(group_csv) if group_csv else None, "symlink": symlink}}
    checked = {}
    for name, (records, problems) in read.items():
        checked[name] = check_split(records, problems, classes, options)
        report["splits"][name] = split_summary(checked[name], problems)

    refuse_unusable(src, read, checked, classes, classes_given, report)

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
    write_report(out, report)
    if verbose:
        print(format_report(report))
    return report


def read_source(fmt, src, src_root, split, classes, single_class):
    """Every split of SRC → ({output split name: (records, problems)}, the category names the files
    declare, the classes: as given, or a YOLO source's names in index order)."""
    read, declared_names = {}, set()
    if fmt == "voc":
        for name, folder in voc_splits(src, split):
            read[name] = read_voc_split(folder, src_root)
    elif fmt == "coco":
        for name, json_path in coco_splits(src, split):
            records, problems, declared = read_coco_split(json_path, src_root, name)
            read[name] = (records, problems)
            declared_names.update(declared)
    else:
        splits = yolo_splits(src, split)
        names = classes or read_yolo_names(src, [d for _, images_dir, labels_dir in splits
                                                 for d in (images_dir.parent, labels_dir)])
        if names is None and not single_class:
            raise DataError(f"no class names for the YOLO labels in {src}: pass --classes a,b,c "
                            f"(in index order), or put classes.txt or data.yaml (names:) there")
        if classes is None and names is not None and not single_class:
            classes = [name for name in names if name is not None]  # the index order is the category order
        for name, images_dir, labels_dir in splits:
            read[name] = read_yolo_split(images_dir, labels_dir, src_root, names, single_class)
    if not read:
        raise DataError(f"nothing to import in {src}: no {fmt} split found (see python -m train.data import --help)")
    return with_output_split_names(read, src), declared_names, classes


def refuse_unusable(src, read, checked, classes, classes_given, report):
    """DataError where the checked splits would make a data set that trains on the wrong thing, or
    on nothing."""
    if not any(checked.values()):
        found = sum(len(records) for records, _ in read.values())
        raise DataError(f"no usable image in {src} ({found} found; see the problems above)", report)
    # A split with files but nothing usable (e.g. its COCO JSON cannot be parsed) would leave training
    # without it; an empty split folder is only skipped.
    unusable = [name for name, images in checked.items() if not images and (read[name][0] or read[name][1])]
    if unusable:
        raise DataError(f"no usable image in the {', '.join(unusable)} split of {src} (see the problems above): "
                        f"fix it, or import the other splits one at a time (--src SRC/<split> --split <split> "
                        f"--classes a,b,c, so that every split gets the same categories)", report)
    if not classes:
        raise DataError(f"no classes: no box in {src} names one; pass --classes a,b,c to import negatives only", report)
    # A split whose every box was refused is a mistake, not a set of negatives (boxes of classes that
    # --classes leaves out are dropped on purpose).
    refusals = ("invalid_box", "orphan_box") if classes_given else ("unknown_class", "invalid_box", "orphan_box")
    for name, images in checked.items():
        refused = [kind for kind in refusals if kind in read[name][1]]
        if images and refused and not any(image["boxes"] for image in images):
            entry = read[name][1][refused[0]]
            raise DataError(f"every box of the {name} split was dropped: {entry['count']} x {PROBLEMS[refused[0]]}, "
                            f"e.g. {entry['files'][0]}", report)


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
        shutil.rmtree(old)
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
        replaced.append(split_dir)
    return replaced


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
        with open(path, encoding="utf-8") as f:
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
                   help="a,b,c: category order; boxes of other classes are dropped (YOLO: names in index order)")
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
