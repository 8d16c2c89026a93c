"""The importer's readers: guess a source's format, find its splits, and read COCO JSON, Pascal VOC XML
or YOLO txt into records (one per image, its boxes as found), which train/data_checks.py then checks."""

import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Hashable
from pathlib import Path

from train.data_checks import DataError, note
from trouble.images import PHOTO_SUFFIXES, photos_in_subfolders

# Files looked at as images. Those of other formats than TRAINABLE_FORMATS (train.data_checks) are
# named and skipped rather than passed over in silence.
IMAGE_EXTENSIONS = (*PHOTO_SUFFIXES, ".bmp", ".tif", ".tiff", ".gif")
# Other usual names of a split → the name it is written under (training validates on "valid").
OUTPUT_SPLIT_NAMES = {"val": "valid", "validation": "valid", "val2017": "valid", "train2017": "train",
                      "test2017": "test"}
SPLIT_FOLDERS = ("train", "valid", "test", *OUTPUT_SPLIT_NAMES)
COCO_JSON_NAMES = ("annotations.json", "_annotations.coco.json")
FORMATS = ("coco", "voc", "yolo")


def image_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# Folders of the VOC layout itself, beside the images: not subfolders of images left unread.
VOC_LAYOUT_FOLDERS = ("Annotations", "annotations", "JPEGImages", "images", "ImageSets", "SegmentationClass",
                      "SegmentationObject")


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
    """Guess the format from the files under SRC (three levels deep): the one of COCO (a JSON named like
    a COCO file), VOC (.xml) and YOLO (.txt) found. Files of two of them (YOLO labels with a stray
    .xml, a photo labelled in another tool) are refused: guessing would leave the others unread in
    silence. Any other JSON (one COCO file under a name of its own) counts only when nothing else is
    found, so a stray info.json beside YOLO labels does not decide."""
    if src.is_file():
        return "coco" if src.suffix == ".json" else None
    found, examples = Counter(), {}
    for path in sorted(list(src.glob("*")) + list(src.glob("*/*")) + list(src.glob("*/*/*"))):
        if path.suffix == ".json" and path.name != "import_report.json":
            kind = "coco" if looks_like_coco_json(path) else "other json"  # reads the file: once
        elif path.suffix == ".xml":
            kind = "voc"
        elif path.suffix == ".txt" and is_yolo_label(path):
            kind = "yolo"
        else:
            continue
        found[kind] += 1
        examples.setdefault(kind, path)
    present = [fmt for fmt in FORMATS if found[fmt]]
    if len(present) > 1:
        what = {"coco": "COCO JSON", "voc": ".xml (VOC)", "yolo": ".txt (YOLO)"}
        raise DataError(f"{src} holds annotation files of more than one format "
                        f"({', '.join(f'{found[fmt]} {what[fmt]}, e.g. {examples[fmt].relative_to(src)}' for fmt in present)}): pass --format "
                        f"{' or '.join(present)} to say which to import (the others are not read)")
    return present[0] if present else "coco" if found["other json"] else None


def is_yolo_label(path: Path) -> bool:
    """A .txt that is a YOLO label file: in a labels/ folder, or beside a photo of its name. Other text
    files (notes.txt, LICENSE.txt, CVAT's labelmap.txt, VOC's ImageSets lists) decide nothing."""
    if path.name.lower() in ("classes.txt", "labelmap.txt"):
        return False
    return "labels" in path.parent.parts or any(path.with_suffix(suffix).is_file()
                                               for suffix in (*IMAGE_EXTENSIONS, *map(str.upper, IMAGE_EXTENSIONS)))


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
        jsons = sorted((src / "annotations").glob("*.json"))
        # COCO's own download also holds captions_* and person_keypoints_*: not boxes to import.
        detection = [path for path in jsons if path.name.startswith("instances_")] or jsons
        for path in detection:
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
    """[(split name, folder, the image stems of the split, or None for all)]: the split folders; else
    the lists of ImageSets/Main (train.txt, val.txt, test.txt, or trainval.txt alone) where there are
    any; else SRC as one split."""
    if split_folders(src):
        return [(name, src / name, None) for name in split_folders(src)]
    lists = src / "ImageSets" / "Main"
    listed = {name: lists / f"{name}.txt" for name in ("train", "val", "test") if (lists / f"{name}.txt").is_file()}
    if not listed and (lists / "trainval.txt").is_file():
        listed = {"train": lists / "trainval.txt"}
    if listed:
        return [(name, src, read_image_set(path)) for name, path in listed.items()]
    return [(default_split, src, None)]


def read_image_set(path):
    """The image stems a VOC ImageSets list names, one per line."""
    try:
        return {line.split()[0] for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None


def voc_folders(folder):
    """(folder of the .xml files, folder of the images) of a VOC split folder."""
    xml_dir = next((folder / name for name in ("Annotations", "annotations") if (folder / name).is_dir()), folder)
    if xml_dir == folder:
        return folder, folder
    return xml_dir, folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else folder / "images"


def not_read(fmt, src, splits_read):
    """What lies in SRC but in none of the splits read: images beside split folders or in other
    folders (holdout/), or, with ImageSets, images that none of its lists names. Reported, not
    passed over in silence."""
    if src.is_file():
        return []
    if fmt == "voc" and not split_folders(src) and (src / "ImageSets" / "Main").is_dir():
        listed = set().union(*(stems for _, _, stems in splits_read if stems is not None))
        image_dir = voc_folders(src)[1]
        unlisted = [p.name for p in image_files(image_dir)] if listed and image_dir.is_dir() else []
        unlisted = [name for name in unlisted if Path(name).stem not in listed]
        if unlisted:
            return [f"{len(unlisted)} image(s) of {image_dir.relative_to(src)}/ that no list in ImageSets/Main "
                    f"names, e.g. {unlisted[0]}"]
        return []
    if not split_folders(src):
        return []
    found = [f"{path.name}" for path in image_files(src)]
    layout = (*SPLIT_FOLDERS, "images", "labels", *VOC_LAYOUT_FOLDERS)
    for name, count in photos_in_subfolders(src, IMAGE_EXTENSIONS, skip=layout).items():
        found.append(f"{name}/ ({'cannot be read' if count is None else f'{count} image(s)'})")
    return [f"{item}: not in a split folder ({', '.join(SPLIT_FOLDERS[:3])})" for item in found]


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

def read_voc_split(folder, src, only=None):
    """Records and problems of one VOC split: .xml beside the images, Annotations/ + JPEGImages/, or
    (LabelImg) annotations/ + images/; `only`: the image stems of the split (ImageSets), or None for all."""
    problems = {}
    xml_dir, image_dir = voc_folders(folder)
    images = image_files(image_dir) if image_dir.is_dir() else []
    if only is None:
        note_unread_subfolders(image_dir, src, problems, read_elsewhere=VOC_LAYOUT_FOLDERS)
    else:
        images = [path for path in images if path.stem in only]
    images_by_name = {p.name: p for p in images}
    images_by_stem = {}
    for path in images:
        images_by_stem.setdefault(path.stem, path)
    records, claimed = [], set()

    parsed = []
    for xml_path in sorted(xml_dir.glob("*.xml")):
        if only is not None and xml_path.stem not in only:
            continue
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
    named = json_path.stem.removeprefix("instances_")  # annotations/instances_val2017.json → val2017/
    for folder in (json_dir, json_dir / "images", json_dir.parent / split, json_dir.parent / "images" / split,
                   json_dir.parent / named, json_dir.parent / "images" / named, json_dir.parent / "images",
                   json_dir.parent):
        for candidate in (folder / file_name, folder / Path(file_name).name):
            try:
                if candidate.is_file():
                    return candidate
            except OSError:  # a name too long for the disk: not there
                continue
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
        with open(json_path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark some editors write
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
        if "bbox" not in ann:
            why = "no bbox, only a segmentation" if "segmentation" in ann else "no bbox"
            note(problems, "invalid_box", f"{name} (annotation {ann.get('id')}: {why})")
            continue
        try:
            if not isinstance(ann["bbox"], (list, tuple)):  # a string "1234" would read as 1, 2, 3, 4
                raise TypeError
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (TypeError, ValueError, OverflowError):  # OverflowError: 10**400 in the JSON
            note(problems, "invalid_box", f"{name} (annotation {ann.get('id')}: bbox {ann['bbox']!r:.60})")
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
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: Infinity, 1e400
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
    # ... and the folder above: --src pointed at one split of an export keeps data.yaml at its root
    # (without it, --classes guessed in another order had relabelled every box).
    folders = [src] + [d for d in split_dirs if d != src] + [src.parent]
    for folder in folders:
        if (folder / "classes.txt").is_file():
            try:
                text = (folder / "classes.txt").read_text(encoding="utf-8-sig")
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
                content = yaml.safe_load(yaml_path.read_text(encoding="utf-8-sig")) or {}
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
            for line_number, line in enumerate(label_path.read_text(encoding="utf-8-sig").splitlines(), 1):
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


# ---------------------------------------------------------------- the whole source

def read_source(fmt, src, src_root, split, classes, single_class):
    """Every split of SRC → ({output split name: (records, problems)}, the category names the files
    declare, the classes: as given, or a YOLO source's names in index order, what in SRC no split
    read, and notes: lines for the report)."""
    read, declared_names, voc_read, notes = {}, set(), [], []
    if fmt == "voc":
        voc_read = voc_splits(src, split)
        for name, folder, only in voc_read:
            read[name] = read_voc_split(folder, src_root, only)
    elif fmt == "coco":
        for name, json_path in coco_splits(src, split):
            records, problems, declared = read_coco_split(json_path, src_root, name)
            read[name] = (records, problems)
            declared_names.update(declared)
    else:
        splits = yolo_splits(src, split)
        # The names file says what each index is; --classes then picks and orders classes by name, as it
        # does for COCO and VOC (taken by index, it had relabelled papules as pustules). Without a
        # names file, --classes names the indices in order.
        names = read_yolo_names(src, [d for _, images_dir, labels_dir in splits
                                      for d in (images_dir.parent, labels_dir)])
        if names is not None and classes and not set(classes) & set(names):
            # Placeholder names ("0", "1") that --classes names none of: --classes names the indices,
            # as without a names file (taken by name, every box had been dropped).
            notes.append(f"--classes names none of the names file's classes ({', '.join(map(str, names))}): "
                         f"taken as the names of indices 0, 1, ... in order")
            names = classes
        elif names is not None:
            declared_names.update(name for name in names if name is not None)
        else:
            names = classes
        if names is None and not single_class:
            raise DataError(f"no class names for the YOLO labels in {src}: pass --classes a,b,c "
                            f"(in index order), or put classes.txt or data.yaml (names:) there")
        if classes is None and names is not None and not single_class:
            classes = [name for name in names if name is not None]  # the index order is the category order
        for name, images_dir, labels_dir in splits:
            read[name] = read_yolo_split(images_dir, labels_dir, src_root, names, single_class)
    if not read:
        raise DataError(f"nothing to import in {src}: no {fmt} split found (see python -m train.data import --help)")
    return with_output_split_names(read, src), declared_names, classes, not_read(fmt, src, voc_read), notes
