"""The importer's checks of every record read: the image decoded and its size, EXIF turn, boxes, grade,
group and a unique name; the problems the importer reports (PROBLEMS, DataError) and its summary."""

import io
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from trouble.images import ACCEPTED_FORMATS, MIN_SIDE, jpeg_defects, loaded

# What both readers take: mmdet's loader (OpenCV) in training, the inference core (PIL) in evaluation
# and serving. OpenCV reads no HEIC; the core refuses BMP, TIFF and GIF.
TRAINABLE_FORMATS = ACCEPTED_FORMATS - {"HEIF"}
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
    "size_mismatch": "image size differs from the annotation (the real size is used; boxes scaled to it where "
                     "the photo was made smaller after annotating)",
    "exif_rotated": "image carries an EXIF rotation (size and boxes written for the photo as displayed; check them)",
    "transparent_image": "image with transparent pixels (kept: the server puts it on white, while training sees "
                         "the colour stored under them; flatten it onto white to be sure)",
    "unknown_class": "box of a class not imported: not in --classes, or not named by the source (dropped)",
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


# ---------------------------------------------------------------- checking images and boxes

def read_image_size(path):
    """Decode the whole image and return (stored width, stored height, exif orientation, whether it has
    transparent pixels), or an error text (starting with "format" for a readable image in a format
    outside TRAINABLE_FORMATS, "size" for one too small to serve)."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in TRAINABLE_FORMATS:
                return f"format {image.format}"
            width, height = image.size
            if min(width, height) < MIN_SIDE:
                return f"size {width}x{height}"
            orientation = image.getexif().get(0x0112, 1)
            # JPEG: decode at 1/8 scale, which still reads every byte; as the server does (one that lacks
            # only its end marker is whole)
            data, image = loaded(data, image, (max(1, width // 8), max(1, height // 8)))
            # One that the server would refuse as damaged (its data ends before its last rows, or is garbled)
            missing, damage = jpeg_defects(data, image)
            transparent = has_transparent_pixels(image)
        if missing:
            return f"its JPEG data ends early: {max(1, math.floor(missing * 100))}% of the photo has none"
        if damage:  # garbled bytes: the pixels after them are noise, and its boxes would teach noise
            return f"its JPEG data is damaged ({damage})"
        return width, height, orientation, transparent
    except UnidentifiedImageError:  # its own message names a BytesIO object, not the file
        return "not an image file that Pillow can read"
    except Exception as error:  # a broken file can make a decoder raise anything: the image is unreadable
        return f"{type(error).__name__}: {error}"


def has_transparent_pixels(image) -> bool:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.mode in ("RGBA", "LA", "PA") and image.getchannel("A").getextrema()[0] < 255


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
        if size[3]:
            note(problems, "transparent_image", record["source"])
        width, height, turn = displayed_size(record, size, problems)
        record = scaled_to_image(record, width, height, turn, problems)
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
    stored_width, stored_height, orientation, _ = size
    orientation = orientation if orientation in range(2, 9) else 1
    width, height = (stored_height, stored_width) if orientation >= 5 else (stored_width, stored_height)
    drawn_on_stored = orientation >= 5 and width != height and record["annotation_size"] == (
        stored_width, stored_height)
    if orientation != 1:
        how = "boxes turned from the stored pixels" if drawn_on_stored else "boxes taken as drawn on it"
        note(problems, "exif_rotated", f"{source} (orientation {orientation}, displayed {width}x{height}; {how})")
    turn = (orientation, stored_width, stored_height) if drawn_on_stored else None
    return width, height, turn


def scaled_to_image(record, width, height, turn, problems):
    """The record with its boxes scaled to the image where the annotation's size differs from the
    image's: a photo made smaller after it was annotated (to save space: the annotation's size is
    larger, of one shape with the image's, and holds every box). Decided by the sizes, not by where
    the lesions lie, so that every photo of a resized set is treated alike. Otherwise the boxes are
    taken as they are (a wrong size in the annotation file). Either way it is noted as size_mismatch."""
    if turn is not None or record["normalised"] or not record["annotation_size"]:
        return record
    ann_w, ann_h = record["annotation_size"]
    if (ann_w, ann_h) == (width, height):
        return record
    boxes = [box for box in record["boxes"] if all(math.isfinite(value) for value in box[:4])]
    one_shape = ann_w > 0 and ann_h > 0 and abs(width / ann_w - height / ann_h) <= 0.01 * width / ann_w
    in_annotation_pixels = (one_shape and ann_w > width
                            and all(x2 <= ann_w + 1 and y2 <= ann_h + 1 for _, _, x2, y2, _ in boxes))
    how = f"boxes scaled by {width / ann_w:.3g}" if in_annotation_pixels else "boxes taken as they are"
    note(problems, "size_mismatch", f"{record['source']} (annotation {ann_w}x{ann_h}, image {width}x{height}; {how})")
    if not in_annotation_pixels:
        return record
    sx, sy = width / ann_w, height / ann_h
    return {**record, "boxes": [(x1 * sx, y1 * sy, x2 * sx, y2 * sy, name) for x1, y1, x2, y2, name in record["boxes"]]}


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


def refuse_unusable(src, read, checked, classes, classes_given, report):
    """DataError where the checked splits would make a data set that trains on the wrong thing, or
    on nothing."""
    if not any(checked.values()):
        found = sum(len(records) for records, _ in read.values())
        if not found and not any(problems for _, problems in read.values()):
            raise DataError(f"no image found in {src} in the {report['format']} layouts (python -m train.data import "
                            f"--help lists them): if it is another format, pass --format", report)
        raise DataError(f"no usable image in {src} ({found} found; see the problems above)", report)
    # A split of photos without one annotation file (its labels/ folder left behind) is not a split of
    # negatives when the others have annotations: validation would score against nothing.
    annotated = {name: any(not record.get("no_annotation_file") for record in records)
                 for name, (records, _) in read.items()}
    bare = [name for name, images in checked.items() if images and not annotated[name]]
    if bare and any(annotated.values()):
        raise DataError(f"no image of the {', '.join(bare)} split of {src} has an annotation file (a labels or "
                        f"Annotations folder left behind?): its photos would all be negatives. Add them, or "
                        f"import the other splits one at a time (--src SRC/<split>)", report)
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


# ---------------------------------------------------------------- the report

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
    lines += [f"! not read: {item}" for item in report.get("not_read") or []]
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
    lines += [f"note: {note}" for note in report.get("notes") or []]
    return "\n".join(lines)
