"""The data importer (train/data.py): round trips on generated data, every validation problem on a
deliberately broken set, the exit code of unusable data, the options, and the real ACNE04 counts."""

import json
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ACNE04_DATA as ACNE04
from tests.conftest import run_module
from tests.synthetic_data import (GRADE_REGEX, GROUP_REGEX, LESION_TYPES, garbled, make_dataset, make_image,
                                  write_voc_xml)
from train.data import DataError, import_dataset, load_coco

REPO = Path(__file__).resolve().parents[1]
CLASSES = ",".join(LESION_TYPES)


def boxes_by_file(coco):
    """{file_name: [(class name, [x, y, w, h]), ...] sorted}"""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    boxes = {name: [] for name in files.values()}
    for ann in coco["annotations"]:
        boxes[files[ann["image_id"]]].append((names[ann["category_id"]], ann["bbox"]))
    return {name: sorted(found, key=lambda nb: (nb[0], round(nb[1][0]), round(nb[1][1])))
            for name, found in boxes.items()}


def truth_boxes(image):
    pairs = zip(image["labels"], image["boxes"])
    return sorted(pairs, key=lambda nb: (nb[0], round(nb[1][0]), round(nb[1][1])))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "train.data", "import", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_round_trip_keeps_boxes_classes_and_images(tmp_path, fmt):
    truth = make_dataset(tmp_path / "src", n_images=8, fmt=fmt)
    report = import_dataset(fmt, tmp_path / "src", tmp_path / "out")

    assert report["categories"] == list(LESION_TYPES)
    for split, images in truth["splits"].items():
        coco = load_coco(tmp_path / "out" / split)
        assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(LESION_TYPES, 1))
        found = boxes_by_file(coco)
        assert sorted(found) == sorted(image["file_name"] for image in images)
        for image in images:
            expected = truth_boxes(image)
            assert [name for name, _ in found[image["file_name"]]] == [name for name, _ in expected]
            for (_, got), (_, want) in zip(found[image["file_name"]], expected):
                assert got == pytest.approx(want, abs=0.01)
        for entry in coco["images"]:
            with Image.open(tmp_path / "out" / split / entry["file_name"]) as copied:
                assert copied.size == (entry["width"], entry["height"]) == (320, 320)
            if fmt == "coco":  # grade and group travel with the COCO image records
                want = next(image for image in images if image["file_name"] == entry["file_name"])
                assert (entry["grade"], entry["group"]) == (want["grade"], want["group"])
        negatives = [image["file_name"] for image in images if not image["boxes"]]
        problems = report["splits"][split]["problems"]
        assert set(problems) == ({"no_boxes"} if negatives else set())
        if negatives:
            assert [Path(name).name for name in problems["no_boxes"]["files"]] == negatives
        assert report["splits"][split]["boxes"] == sum(len(image["boxes"]) for image in images)
    assert json.loads((tmp_path / "out" / "import_report.json").read_text())["splits"] == report["splits"]


def test_other_layouts_and_format_detection(tmp_path):
    truth = make_dataset(tmp_path / "synthetic", n_images=4, fmt="coco")
    want = {split: sum(len(image["boxes"]) for image in images) for split, images in truth["splits"].items()}
    # Roboflow COCO: <split>/_annotations.coco.json with an unused super-category as id 0
    roboflow = tmp_path / "roboflow"
    shutil.copytree(tmp_path / "synthetic", roboflow)
    for split in want:
        coco = json.loads((roboflow / split / "annotations.json").read_text())
        coco["categories"] = [{"id": 0, "name": "lesions", "supercategory": "none"}] + [
            dict(category, supercategory="lesions") for category in coco["categories"]]
        (roboflow / split / "annotations.json").unlink()
        (roboflow / split / "_annotations.coco.json").write_text(json.dumps(coco))
    # Ultralytics YOLO: images/<split> + labels/<split> with "val", names in classes.txt
    make_dataset(tmp_path / "yolo", n_images=4, fmt="yolo")
    ultralytics = tmp_path / "ultralytics"
    for split in want:
        for kind in ("images", "labels"):
            target = ultralytics / kind / ("val" if split == "valid" else split)
            shutil.copytree(tmp_path / "yolo" / split / kind, target)
    (ultralytics / "classes.txt").write_text("\n".join(LESION_TYPES) + "\n")
    # The same with COCO 2017's split names: images/train2017 + labels/val2017 ...
    yolo2017 = tmp_path / "yolo2017"
    for kind in ("images", "labels"):
        for split in want:
            shutil.copytree(ultralytics / kind / ("val" if split == "valid" else split),
                            yolo2017 / kind / {"train": "train2017", "valid": "val2017"}[split])
    shutil.copy(ultralytics / "classes.txt", yolo2017)
    # COCO 2017 layout: annotations/instances_<split>2017.json + <split>2017/ images
    coco2017 = tmp_path / "coco2017"
    for split in want:
        name = {"train": "train2017", "valid": "val2017"}[split]
        shutil.copytree(tmp_path / "synthetic" / split, coco2017 / name, ignore=shutil.ignore_patterns("*.json"))
        (coco2017 / "annotations").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "synthetic" / split / "annotations.json",
                    coco2017 / "annotations" / f"instances_{name}.json")
    # VOC devkit: Annotations/ + JPEGImages/, no split folders: one split named by --split
    make_dataset(tmp_path / "voc", n_images=4, fmt="voc")
    devkit = tmp_path / "devkit"
    shutil.copytree(tmp_path / "voc" / "valid", devkit / "JPEGImages", ignore=shutil.ignore_patterns("*.xml"))
    shutil.copytree(tmp_path / "voc" / "valid", devkit / "Annotations", ignore=shutil.ignore_patterns("*.jpg"))

    # val, val2017 and train2017 are written as valid and train: the names training reads
    for fmt, src, split, boxes in (("coco", roboflow, "train", want), ("yolo", ultralytics, "train", want),
                                   ("yolo", yolo2017, "train", want), ("coco", coco2017, "train", want),
                                   ("voc", devkit, "test", {"test": want["valid"]})):
        report = import_dataset(None, src, tmp_path / "out" / src.name, split=split)  # format guessed from the files
        assert report["format"] == fmt
        assert report["categories"] == list(LESION_TYPES)
        assert {name: summary["boxes"] for name, summary in report["splits"].items()} == boxes
        assert all(set(summary["problems"]) <= {"no_boxes"} for summary in report["splits"].values())
        assert all((tmp_path / "out" / src.name / name / "annotations.json").is_file() for name in boxes)

    both = tmp_path / "both"  # valid/ and val/: which one is meant cannot be guessed
    for name in ("valid", "val"):
        shutil.copytree(tmp_path / "synthetic" / "valid", both / name)
    with pytest.raises(DataError, match="'valid' and 'val', which would both be written as 'valid'"):
        import_dataset("coco", both, tmp_path / "out" / "both")


def write_image(folder, name, n_lesions=2, seed=0):
    image, boxes, labels = make_image((320, 320), n_lesions, seed)
    image.save(folder / name, quality=90)
    return boxes, labels


def test_each_problem_of_a_broken_voc_set_is_repaired_and_named(tmp_path):
    src = tmp_path / "broken"
    src.mkdir()
    boxes, labels = write_image(src, "good.jpg", seed=1)
    write_voc_xml(src / "good.xml", "good.jpg", 320, 320, boxes, labels)
    # box reaching 20 px past the right edge, then one of zero width (xmax = xmin - 1 in VOC's 1-based pixels)
    boxes, labels = write_image(src, "outside.jpg", seed=2)
    write_voc_xml(src / "outside.xml", "outside.jpg", 320, 320, boxes + [[300, 10, 40, 20]], labels + ["papule"])
    boxes, labels = write_image(src, "zero.jpg", seed=3)
    write_voc_xml(src / "zero.xml", "zero.jpg", 320, 320, boxes + [[50, 50, 0, 10]], labels + ["papule"])
    boxes, labels = write_image(src, "unknown.jpg", seed=4)
    write_voc_xml(src / "unknown.xml", "unknown.jpg", 320, 320, boxes + [[100, 100, 20, 20]], labels + ["nodule"])
    boxes, labels = write_image(src, "badsize.jpg", seed=5)
    write_voc_xml(src / "badsize.xml", "badsize.jpg", 100, 100, boxes, labels)
    boxes, labels = write_image(src, "truncated.jpg", seed=6)
    write_voc_xml(src / "truncated.xml", "truncated.jpg", 320, 320, boxes, labels)
    data = (src / "truncated.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    # Cut, then given its end marker back (as a repair tool does): it decodes, the lower rows flat grey
    write_voc_xml(src / "mended.xml", "mended.jpg", 320, 320, boxes, labels)
    (src / "mended.jpg").write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    write_voc_xml(src / "garbled.xml", "garbled.jpg", 320, 320, boxes, labels)
    (src / "garbled.jpg").write_bytes(garbled(data))  # bit rot: PIL decodes it, as noise
    write_image(src, "noxml.jpg", seed=7)
    (src / "broken_noxml.jpg").write_bytes(data[:100])  # skipped: not also counted as a negative kept
    Image.new("RGB", (8, 8), (200, 150, 130)).save(src / "tiny.png")  # the model server refuses it
    write_voc_xml(src / "tiny.xml", "tiny.png", 8, 8, [], [])
    write_image(src, "noobjects.jpg", seed=8)
    write_voc_xml(src / "noobjects.xml", "noobjects.jpg", 320, 320, [], [])
    write_image(src, "unparsable.jpg", seed=9)
    (src / "unparsable.xml").write_text("<annotation><object><name>papule</name>")
    # Formats training (OpenCV) or serving (the inference core) cannot read: named and skipped
    for name, save_as in (("bitmap.bmp", "BMP"), ("scan.tif", "TIFF"), ("moving.jpg", "GIF")):
        image, boxes, labels = make_image((320, 320), 2, seed=10)
        image.save(src / name, format=save_as)
        write_voc_xml(src / name.replace(Path(name).suffix, ".xml"), name, 320, 320, boxes, labels)

    report = import_dataset("voc", src, tmp_path / "out", classes=CLASSES)

    problems = report["splits"]["train"]["problems"]
    counts = {kind: (problem["count"], [f.split(" ")[0] for f in problem["files"]])  # name without "(why)"
              for kind, problem in problems.items()}
    assert counts == {
        "bad_annotation_file": (1, ["unparsable.xml"]),
        "unreadable_image": (4, ["broken_noxml.jpg", "garbled.jpg", "mended.jpg", "truncated.jpg"]),
        "unsupported_format": (3, ["bitmap.bmp", "moving.jpg", "scan.tif"]),
        "too_small": (1, ["tiny.png"]),
        "size_mismatch": (1, ["badsize.jpg"]),
        "unknown_class": (1, ["unknown.jpg"]),
        "box_clipped": (1, ["outside.jpg"]),
        "empty_box": (1, ["zero.jpg"]),
        "no_annotation_file": (1, ["noxml.jpg"]),
        "no_boxes": (2, ["noobjects.jpg", "noxml.jpg"]),
    }
    assert "nodule" in problems["unknown_class"]["files"][0]
    assert any(f.startswith("mended.jpg") and "JPEG data ends early" in f for f in problems["unreadable_image"]["files"])
    assert any(f.startswith("garbled.jpg") and "JPEG data is damaged" in f for f in problems["unreadable_image"]["files"])
    coco = load_coco(tmp_path / "out" / "train")
    found = boxes_by_file(coco)
    assert sorted(found) == ["badsize.jpg", "good.jpg", "noobjects.jpg", "noxml.jpg", "outside.jpg", "unknown.jpg",
                             "zero.jpg"]
    sizes = {image["file_name"]: (image["width"], image["height"]) for image in coco["images"]}
    assert sizes["badsize.jpg"] == (320, 320)
    assert ("papule", [300, 10, 20, 20]) in found["outside.jpg"]  # clipped at x = 320
    assert len(found["zero.jpg"]) == 2 and len(found["unknown.jpg"]) == 2  # the bad box dropped, the others kept
    assert found["noxml.jpg"] == [] and found["noobjects.jpg"] == []
    assert report["splits"]["train"]["images"] == 7


def test_coco_duplicate_names_kept_apart_and_an_unusable_split_refused(tmp_path):
    src = tmp_path / "src"
    images, annotations = [], []
    for image_id, folder in enumerate(["a", "b"], 1):  # a/x.jpg and b/x.jpg: the same name once flattened
        (src / "train" / folder).mkdir(parents=True)
        boxes, _ = write_image(src / "train" / folder, "x.jpg", n_lesions=image_id, seed=image_id)
        images.append({"id": image_id, "file_name": f"{folder}/x.jpg", "width": 320, "height": 320})
        annotations += [{"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "bbox": box, "iscrowd": 0}
                        for box in boxes]
    (src / "train" / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "papule"}]}))

    report = import_dataset("coco", src, tmp_path / "out")

    train = report["splits"]["train"]
    assert train["problems"]["duplicate_name"]["count"] == 1
    assert train["problems"]["duplicate_name"]["files"] == ["b/x.jpg (written as x_2.jpg)"]
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    assert {name: len(boxes) for name, boxes in found.items()} == {"x.jpg": 1, "x_2.jpg": 2}
    assert (tmp_path / "out" / "train" / "x_2.jpg").read_bytes() == (src / "train" / "b" / "x.jpg").read_bytes()

    # A split whose JSON cannot be parsed is unusable: the import stops, naming it, and writes nothing.
    (src / "valid").mkdir()
    write_image(src / "valid", "y.jpg")
    (src / "valid" / "annotations.json").write_text('{"images": [')
    with pytest.raises(DataError, match="no usable image in the valid split") as refused:
        import_dataset("coco", src, tmp_path / "out2")
    valid = refused.value.report["splits"]["valid"]
    assert valid["images"] == 0
    assert valid["problems"]["bad_annotation_file"]["files"][0].startswith("valid/annotations.json (")
    assert not (tmp_path / "out2").exists()

    # Two images under one id would silently merge: the file is refused as unparsable.
    images[1]["id"] = 1
    (src / "valid" / "annotations.json").write_text(json.dumps(
        {"images": images[:1] + [dict(images[1], file_name="y.jpg")], "annotations": [],
         "categories": [{"id": 1, "name": "papule"}]}))
    with pytest.raises(DataError) as refused:
        import_dataset("coco", src, tmp_path / "out2")
    assert "image ids [1] are used by more than one image" in \
        refused.value.report["splits"]["valid"]["problems"]["bad_annotation_file"]["files"][0]

    # JSON of the wrong shape: named as such, never a traceback.
    for wrong, message in (({"images": {"a": 1}, "annotations": [], "categories": []}, "must each be a list"),
                           ({"images": [{"id": 2, "file_name": None}], "annotations": [], "categories": []},
                            "needs an id (a number) and a file_name"),
                           ("[" * 100_000 + "]" * 100_000, "nested too deeply")):  # was a RecursionError
        (src / "valid" / "annotations.json").write_text(wrong if isinstance(wrong, str) else json.dumps(wrong))
        with pytest.raises(DataError) as refused:
            import_dataset("coco", src, tmp_path / "out2")
        assert message in refused.value.report["splits"]["valid"]["problems"]["bad_annotation_file"]["files"][0]
    # "annotations": null is a split without boxes.
    (src / "valid" / "annotations.json").write_text(json.dumps(
        {"images": [dict(images[1], id=5, file_name="y.jpg")], "annotations": None,
         "categories": [{"id": 1, "name": "papule"}]}))
    assert import_dataset("coco", src, tmp_path / "out3")["splits"]["valid"]["images"] == 1


def test_yolo_index_out_of_range_and_malformed_label_file(tmp_path):
    truth = make_dataset(tmp_path / "src", n_images=4, fmt="yolo")
    first, second = truth["splits"]["train"][1]["file_name"], truth["splits"]["train"][2]["file_name"]
    labels = tmp_path / "src" / "train" / "labels"
    with open(labels / f"{Path(first).stem}.txt", "a") as f:
        f.write("7 0.5 0.5 0.1 0.1\n")
    (labels / f"{Path(second).stem}.txt").write_text("0 0.5\n")

    report = import_dataset("yolo", tmp_path / "src", tmp_path / "out")

    problems = report["splits"]["train"]["problems"]
    assert problems["unknown_class"]["count"] == 1
    assert problems["unknown_class"]["files"] == [f"train/images/{first} (class index 7)"]
    assert problems["bad_annotation_file"]["files"][0].startswith(f"train/labels/{Path(second).stem}.txt")
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    assert second not in found and len(found[first]) == len(truth["splits"]["train"][1]["boxes"])

    # classes.txt saved in Latin-1: named, with what to do.
    classes = next((tmp_path / "src").rglob("classes.txt"), None) or tmp_path / "src" / "classes.txt"
    classes.write_bytes("papule\nros\xe9ole\n".encode("latin-1"))
    with pytest.raises(DataError, match="classes.txt is not UTF-8 text"):
        import_dataset("yolo", tmp_path / "src", tmp_path / "out_latin1")


def test_single_class_grade_and_group_options(tmp_path):
    truth = make_dataset(tmp_path / "src", n_images=8, fmt="voc")
    overridden = truth["splits"]["train"][0]["file_name"]
    (tmp_path / "groups.csv").write_text(f"file_name,group\n{overridden},nose\n")

    report = import_dataset("voc", tmp_path / "src", tmp_path / "out", single_class="lesion",
                            grade_from_filename=GRADE_REGEX, group_from_filename=GROUP_REGEX,
                            group_csv=tmp_path / "groups.csv")

    assert report["categories"] == ["lesion"]
    for split, images in truth["splits"].items():
        coco = load_coco(tmp_path / "out" / split)
        assert coco["categories"] == [{"id": 1, "name": "lesion"}]
        assert len(coco["annotations"]) == report["splits"][split]["boxes_per_class"]["lesion"] \
            == sum(len(image["boxes"]) for image in images)
        want = {image["file_name"]: (image["grade"], "nose" if image["file_name"] == overridden else image["group"])
                for image in images}
        assert {image["file_name"]: (image["grade"], image["group"]) for image in coco["images"]} == want
    assert report["splits"]["train"]["grades"] == {"0": 3, "1": 1, "2": 1, "3": 1}


def test_grade_outside_0_to_3_is_reported_not_stored(tmp_path):
    make_dataset(tmp_path / "src", n_images=8, fmt="coco")
    # img000..img007: the digit after "img00" is the image index, a grade only for 0..3
    report = import_dataset("coco", tmp_path / "src", tmp_path / "out", grade_from_filename=r"img00(\d)_")
    assert [f.split("_")[0] for f in report["splits"]["train"]["problems"]["no_grade"]["files"]] == ["img004", "img005"]
    images = load_coco(tmp_path / "out" / "train")["images"]
    assert [image.get("grade") for image in images] == [0, 1, 2, 3, None, None]


def test_earlier_import_is_kept_unless_overwrite(tmp_path):
    make_dataset(tmp_path / "src", n_images=2, fmt="coco")
    import_dataset("coco", tmp_path / "src", tmp_path / "out")
    with pytest.raises(DataError, match="--overwrite"):
        import_dataset("coco", tmp_path / "src", tmp_path / "out")
    report = import_dataset("coco", tmp_path / "src", tmp_path / "out", single_class="lesion", overwrite=True)
    assert load_coco(tmp_path / "out" / "train")["categories"] == [{"id": 1, "name": "lesion"}]
    assert report["splits"]["train"]["images"] == 1


def test_overwrite_never_deletes_the_source_or_what_a_refused_import_found(tmp_path):
    make_dataset(tmp_path / "raw", n_images=4, fmt="coco")
    import_dataset("coco", tmp_path / "raw", tmp_path / "ds")  # an earlier import, which --overwrite may replace
    before = {p: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    # --out ds with --src ds/train would replace ds/train, the source itself: refused, nothing touched
    for args in (["--copy"], ["--symlink"]):
        result = run_cli("--src", tmp_path / "ds" / "train", "--out", tmp_path / "ds", "--overwrite", *args)
        assert result.returncode == 2 and "which holds the source" in result.stderr, result.stderr
    # Nor into a folder inside the source: the source would hold the import.
    result = run_cli("--src", tmp_path / "ds", "--out", tmp_path / "ds" / "coco")
    assert result.returncode == 2 and "lies inside the source" in result.stderr, result.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()} == before
    assert not any(p.is_symlink() for p in (tmp_path / "ds").rglob("*")) and not (tmp_path / "ds" / "coco").exists()
    # A COCO file's folder is not its source: only the file and the images it lists are read.
    make_dataset(tmp_path / "export", n_images=4, fmt="coco")
    coco_file = tmp_path / "export" / "train" / "annotations.json"
    assert import_dataset("coco", coco_file, tmp_path / "export" / "train" / "imported",
                          split="train")["splits"]["train"]["images"] > 0

    # An --overwrite refused on its second split deletes nothing of the first.
    out = tmp_path / "out"
    import_dataset("coco", tmp_path / "ds", out)
    (out / "valid" / "annotations.json").unlink()
    (out / "valid" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="is not an earlier import"):
        import_dataset("coco", tmp_path / "ds", out, overwrite=True)
    assert (out / "train" / "annotations.json").is_file() and (out / "valid" / "notes.txt").is_file()

    # Splits may be imported one at a time into one OUT: the other split stays.
    shutil.rmtree(out)
    import_dataset("coco", tmp_path / "ds" / "train", out, split="train", classes=CLASSES)
    import_dataset("coco", tmp_path / "ds" / "valid", out, split="valid", classes=CLASSES)
    assert load_coco(out / "train")["categories"] == load_coco(out / "valid")["categories"]
    import_dataset("coco", tmp_path / "ds" / "valid", out, split="valid", classes=CLASSES, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["import_report.json", "train", "valid"]


def test_cli_copies_unless_told_to_symlink(tmp_path):
    make_dataset(tmp_path / "src", n_images=2, fmt="coco")
    for args, linked in (([], False), (["--copy"], False), (["--symlink"], True)):
        out = tmp_path / f"out{len(args)}{linked}"
        assert run_cli("--src", tmp_path / "src", "--out", out, *args).returncode == 0
        written = [p for p in (out / "train").iterdir() if p.suffix == ".jpg"]
        assert written and all(p.is_symlink() == linked for p in written)
        assert json.loads((out / "import_report.json").read_text())["options"]["symlink"] == linked


@pytest.mark.parametrize("orientation", range(2, 9))
def test_boxes_turn_with_the_exif_orientation(orientation):
    """turn_box_upright agrees with the inference core's own turn (trouble.images.upright_rgb) and with
    PIL's exif_transpose."""
    from PIL import ImageOps
    from train.data_checks import turn_box_upright
    from trouble.images import upright_rgb
    stored = Image.new("L", (64, 40))
    stored.paste(255, (5, 8, 20, 14))  # a box at x 5..20, y 8..14 in stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    stored.getexif()[0x0112] = orientation
    displayed = ImageOps.exif_transpose(stored)
    served = upright_rgb(stored).convert("L")
    assert turn_box_upright((5, 8, 20, 14), orientation, 64, 40) == displayed.getbbox() == served.getbbox()


def test_exif_rotated_photos_are_written_as_displayed(tmp_path):
    """A phone photo stored 320x200 with orientation 6 is displayed (and trained and served) 200x320."""
    src = tmp_path / "src"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("stored.jpg", "displayed.jpg"):
        Image.new("RGB", (320, 200), (200, 160, 140)).save(src / name, exif=exif)
    # one annotated on the stored pixels (size 320x200), one on the displayed photo (size 200x320)
    write_voc_xml(src / "stored.xml", "stored.jpg", 320, 200, [[20, 10, 40, 20]], ["papule"])
    write_voc_xml(src / "displayed.xml", "displayed.jpg", 200, 320, [[150, 20, 30, 250]], ["papule"])
    report = import_dataset("voc", src, tmp_path / "out")

    coco = load_coco(tmp_path / "out" / "train")
    assert {image["file_name"]: (image["width"], image["height"]) for image in coco["images"]} == \
        {"stored.jpg": (200, 320), "displayed.jpg": (200, 320)}
    found = {name: [box for _, box in boxes] for name, boxes in boxes_by_file(coco).items()}
    # stored x 20..60, y 10..30 turned clockwise: displayed x = 200 - y, y = x
    assert found["stored.jpg"] == [pytest.approx([170, 20, 20, 40])]
    assert found["displayed.jpg"] == [pytest.approx([150, 20, 30, 250])]  # kept, not clipped
    problems = report["splits"]["train"]["problems"]
    assert "size_mismatch" not in problems and "box_clipped" not in problems
    assert sorted(problems["exif_rotated"]["files"]) == [
        "displayed.jpg (orientation 6, displayed 200x320; boxes taken as drawn on it)",
        "stored.jpg (orientation 6, displayed 200x320; boxes turned from the stored pixels)"]


def test_infinite_coordinates_thin_photos_and_a_stray_json(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    boxes, labels = write_image(src, "a.jpg")
    write_voc_xml(src / "a.xml", "a.jpg", 320, 320, boxes + [[float("nan"), 5, 10, 10], [5, 5, float("inf"), 10]],
                  labels + ["papule", "papule"])
    Image.new("RGB", (7, 300)).save(src / "thin.jpg")  # under 8 px JPEG draft mode once divided by zero; under 16,
    report = import_dataset("voc", src, tmp_path / "out", classes=CLASSES)  # the model server refuses it
    train = report["splits"]["train"]
    assert train["problems"]["invalid_box"]["count"] == 2 and "box_clipped" not in train["problems"]
    assert train["boxes"] == len(boxes) and train["images"] == 1
    assert train["problems"]["too_small"]["files"] == ["thin.jpg (size 7x300)"]

    yolo = tmp_path / "yolo"
    make_dataset(yolo, n_images=2, fmt="yolo")
    (yolo / "info.json").write_text('{"license": "CC BY 4.0"}')  # not a COCO file: the format is still YOLO
    assert import_dataset(None, yolo, tmp_path / "yolo_out")["format"] == "yolo"


def test_load_coco_names_the_broken_file(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5}],
            "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],  # no image 2
            "categories": [{"id": 1, "name": "papule"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"annotations\.json.*\[1\]"):
        load_coco(tmp_path)


def unusable_sources(tmp_path):
    """(case, arguments) for data the importer must refuse."""
    only_broken = tmp_path / "only_broken"
    only_broken.mkdir()
    (only_broken / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_voc_xml(only_broken / "a.xml", "a.jpg", 320, 320, [[1, 1, 5, 5]], ["papule"])
    yolo = tmp_path / "yolo_without_names"
    make_dataset(yolo, n_images=2, fmt="yolo")
    (yolo / "data.yaml").unlink()
    negatives = tmp_path / "negatives_only"
    negatives.mkdir()
    write_image(negatives, "n.jpg")
    return [
        ("does not exist", ["--format", "voc", "--src", tmp_path / "missing"]),
        ("no usable image", ["--format", "voc", "--src", only_broken]),
        ("no class names", ["--format", "yolo", "--src", yolo]),
        ("no classes", ["--format", "voc", "--src", negatives]),
        ("exactly one (group)",
         ["--format", "voc", "--src", negatives, "--classes", "a", "--grade-from-filename", "levle"]),
        ("cannot tell the format", ["--src", negatives]),
    ]


def test_unusable_data_exits_2_with_one_clear_line(tmp_path):
    for expected, args in unusable_sources(tmp_path):
        result = run_cli(*args, "--out", tmp_path / "out")
        assert result.returncode == 2, (expected, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # the summary of what was found comes before the error
    assert "unreadable or truncated image" in run_cli("--format", "voc", "--src", tmp_path / "only_broken",
                                                      "--out", tmp_path / "out").stdout


@pytest.mark.skipif(not ACNE04.is_dir(), reason="ACNE04 data not present")
def test_real_acne04_counts_match_the_xml_files(tmp_path):
    out = tmp_path / "acne04"
    result = run_cli("--format", "voc", "--src", ACNE04, "--out", out, "--single-class", "acne",
                     "--grade-from-filename", r"levle(\d)_", "--symlink")
    assert result.returncode == 0, result.stderr
    assert "train: 991 images" in result.stdout and "valid: 283 images" in result.stdout

    report = json.loads((out / "import_report.json").read_text())
    for split, n_images in (("train", 991), ("valid", 283)):
        xml_files = sorted((ACNE04 / split).glob("*.xml"))
        xml_boxes = sum(len(ET.parse(path).getroot().findall("object")) for path in xml_files)
        coco = load_coco(out / split)
        assert len(xml_files) == len(coco["images"]) == report["splits"][split]["images"] == n_images
        assert len(coco["annotations"]) == report["splits"][split]["boxes"] == xml_boxes
        assert coco["categories"] == [{"id": 1, "name": "acne"}]
        assert all(image["grade"] == int(image["file_name"][5]) for image in coco["images"])  # levleK_...
        problems = set(report["splits"][split]["problems"])
        assert not {"unreadable_image", "empty_box", "unknown_class", "bad_annotation_file"} & problems
        first = out / split / coco["images"][0]["file_name"]
        assert first.is_symlink() and first.resolve() == (ACNE04 / split / first.name).resolve()


def test_synthetic_data_is_deterministic_and_boxes_are_tight(tmp_path):
    first, second = make_dataset(tmp_path / "a", n_images=4, seed=3), make_dataset(tmp_path / "b", n_images=4, seed=3)
    assert first["splits"] == second["splits"]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    image, boxes, labels = make_image((400, 300), n_lesions=9, seed=5)
    assert len(boxes) == 9 and labels == list(LESION_TYPES) * 3
    pixels = image.load()
    for x, y, w, h in boxes:  # the drawn lesion touches every side of its box (lesions are far from skin tone)
        def lesion(px, py):
            return sum(abs(a - b) for a, b in zip(pixels[px, py], (226, 180, 150))) > 150
        assert any(lesion(x, y + dy) for dy in range(h)) and any(lesion(x + w - 1, y + dy) for dy in range(h))
        assert any(lesion(x + dx, y) for dx in range(w)) and any(lesion(x + dx, y + h - 1) for dx in range(w))
        assert not any(lesion(x - 1, y + dy) for dy in range(h)) and not any(lesion(x + dx, y + h) for dx in range(w))


def test_a_grade_pattern_whose_group_may_match_nothing(tmp_path):
    """`--grade-from-filename 'img(\\d)?'`: where the group matches nothing, the photo has no grade
    (a problem the report counts), not a crash."""
    make_dataset(tmp_path / "src", n_images=4, fmt="voc")
    report = import_dataset("voc", tmp_path / "src", tmp_path / "out", grade_from_filename=r"img(9)?")
    assert report["splits"]["train"]["problems"]["no_grade"]["count"] == report["splits"]["train"]["images"] > 0


# ---------------------------------------------------------------- nothing lost, nothing relabelled

def test_split_names_a_plain_folder_inside_out(tmp_path):
    """--split names OUT's subfolder: '../x' wrote, and with --overwrite deleted, a folder outside OUT."""
    make_dataset(tmp_path / "src", n_images=4, fmt="voc")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    for split in ("../precious", str(tmp_path / "precious"), ".hidden", ""):
        result = run_cli("--src", tmp_path / "src" / "valid", "--out", tmp_path / "new", "--split", split,
                         "--overwrite")
        assert result.returncode == 2 and "--split must be a plain folder name" in result.stderr, result.stderr
    assert [p.name for p in (tmp_path / "precious").iterdir()] == ["notes.txt"] and not (tmp_path / "new").exists()


def test_an_interrupted_import_leaves_out_as_it_was(tmp_path):
    """Ctrl-C while the images are written: OUT keeps the earlier import whole (it was left with a
    new train split, half a valid split and the old report, and could not be imported over)."""
    if ACNE04 is None:
        pytest.skip("the ACNE04 photos are not on this machine")
    out = tmp_path / "out"
    make_dataset(tmp_path / "small", n_images=8, fmt="voc")
    import_dataset("voc", tmp_path / "small", out, single_class="acne")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    command = [sys.executable, "-m", "train.data", "import", "--format", "voc", "--src", str(ACNE04), "--out",
               str(out), "--single-class", "acne", "--copy", "--overwrite"]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stdout:
        if line.startswith("writing the"):  # the images are being copied now
            break
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    if run.returncode == 130:  # the usual case; on a fast disk the import may have finished first
        assert "is as it was" in stderr and "Traceback" not in stderr, stderr
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    else:
        assert run.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["import_report.json", "train", "valid"]  # no half folders
    assert subprocess.run(command, cwd=REPO, capture_output=True, timeout=300).returncode == 0  # and it goes on
    assert len(load_coco(out / "valid")["images"]) == 283


def test_overwrite_replaces_only_an_earlier_import(tmp_path):
    """A COCO data set of the user's own (no import_report.json) was deleted by --overwrite."""
    make_dataset(tmp_path / "mine", n_images=4, fmt="coco")
    make_dataset(tmp_path / "other", n_images=4, fmt="voc")
    before = load_coco(tmp_path / "mine" / "train")
    with pytest.raises(DataError, match="is not an earlier import"):
        import_dataset("voc", tmp_path / "other", tmp_path / "mine", overwrite=True)
    assert load_coco(tmp_path / "mine" / "train") == before
    # Nor a split of the user's own beside an imported one (import_report.json lists only the import's).
    import_dataset("voc", tmp_path / "other" / "train", tmp_path / "out", split="train", classes=CLASSES)
    shutil.copytree(tmp_path / "mine" / "valid", tmp_path / "out" / "valid")
    with pytest.raises(DataError, match="out/valid exists and is not an earlier import"):
        import_dataset("voc", tmp_path / "other", tmp_path / "out", overwrite=True)
    assert load_coco(tmp_path / "out" / "valid") == load_coco(tmp_path / "mine" / "valid")
    # And a file where a split goes is named before anything is written (it left OUT half-replaced).
    shutil.rmtree(tmp_path / "out" / "valid")
    (tmp_path / "out" / "valid").write_text("a file")
    with pytest.raises(DataError, match="is a file, where this import would write its valid split"):
        import_dataset("voc", tmp_path / "other", tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["import_report.json", "train", "valid"]


def test_classes_that_leave_a_split_without_boxes_make_negatives_not_an_error(tmp_path):
    """--classes drops the other classes on purpose: a split left with none is not 'every box refused'."""
    make_dataset(tmp_path / "src", n_images=4, fmt="coco")
    report = import_dataset("coco", tmp_path / "src", tmp_path / "out", classes="rash")
    assert report["splits"]["train"]["boxes"] == 0 and report["splits"]["train"]["images"] > 0


def test_a_voc_filename_left_from_a_renamed_file_does_not_move_boxes(tmp_path):
    """img001's .xml naming img002 (a <filename> left over from a rename) put img001's boxes on img002."""
    truth = make_dataset(tmp_path / "src", n_images=8, fmt="voc")
    first, second = truth["splits"]["train"][:2]
    xml = tmp_path / "src" / "train" / f"{Path(first['file_name']).stem}.xml"
    xml.write_text(xml.read_text().replace(f"<filename>{first['file_name']}<", f"<filename>{second['file_name']}<"))
    import_dataset("voc", tmp_path / "src", tmp_path / "out")
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    for image in (first, second):
        assert [name for name, _ in found[image["file_name"]]] == [name for name, _ in truth_boxes(image)]
    # An .xml without an image of its own (its photo deleted), sorting first and naming `second`, with
    # `first`'s boxes: it took `second`, and `second`'s own .xml was refused as a second annotation.
    shutil.copy(xml, xml.with_name("0_deleted.xml"))
    import_dataset("voc", tmp_path / "src", tmp_path / "out2")
    found = boxes_by_file(load_coco(tmp_path / "out2" / "train"))
    for image in (first, second):
        assert [name for name, _ in found[image["file_name"]]] == [name for name, _ in truth_boxes(image)]


def test_yolo_names_given_by_index_keep_their_index(tmp_path):
    """data.yaml's names: {0: comedone, 2: pustule} made class 1 "pustule" (keys sorted, then listed)."""
    make_dataset(tmp_path / "src", n_images=4, fmt="yolo")
    for old in (tmp_path / "src").glob("*.txt"):
        old.unlink()  # classes.txt would win over data.yaml
    (tmp_path / "src" / "data.yaml").write_text("names: {0: comedone, 2: pustule}\n")
    report = import_dataset("yolo", tmp_path / "src", tmp_path / "out")
    assert report["categories"] == ["comedone", "pustule"]
    indices = [line.split()[0] for path in (tmp_path / "src" / "train" / "labels").glob("*.txt")
               for line in path.read_text().splitlines() if line.strip()]
    train = report["splits"]["train"]
    assert train["boxes_per_class"] == {"comedone": indices.count("0"), "pustule": indices.count("2")}
    assert train["problems"]["unknown_class"]["count"] == indices.count("1") > 0
    (tmp_path / "src" / "data.yaml").write_text("names: {0: a, one: b}\n")
    with pytest.raises(DataError, match="mapping of class index to name"):
        import_dataset("yolo", tmp_path / "src", tmp_path / "out2")
    # A data.yaml whose names are one word, or that is a list: named (it was "put data.yaml (names:)
    # there", and "'list' object has no attribute 'get'").
    (tmp_path / "src" / "data.yaml").write_text("names: acne\n")
    with pytest.raises(DataError, match=r"data.yaml: names must be a list, or a mapping .*got 'acne'"):
        import_dataset("yolo", tmp_path / "src", tmp_path / "out2")
    (tmp_path / "src" / "data.yaml").write_text("- acne\n")
    with pytest.raises(DataError, match="no class names for the YOLO labels"):  # another YAML file, not names
        import_dataset("yolo", tmp_path / "src", tmp_path / "out2")
    # A class index written "0.0" is class 0; an infinite value is named as such (it was "these look like pixels").
    (tmp_path / "src" / "data.yaml").write_text("names: {0: comedone, 2: pustule}\n")
    label = sorted((tmp_path / "src" / "train" / "labels").glob("*.txt"))[0]
    label.write_text("0.0 0.5 0.5 0.1 0.1\n2 0.5 0.5 inf 0.1\n")
    problems = import_dataset("yolo", tmp_path / "src", tmp_path / "out3")["splits"]["train"]["problems"]
    assert problems["bad_annotation_file"]["files"] == [
        f"train/labels/{label.name} (line 2: a value that is not a finite number: '2 0.5 0.5 inf 0.1')"]


def test_a_split_whose_every_box_is_refused_is_an_error_not_negatives(tmp_path):
    """String category ids: every box was dropped as an unknown class, and the import said 'written'."""
    make_dataset(tmp_path / "src", n_images=8, fmt="coco")
    for path in (tmp_path / "src").rglob("annotations.json"):
        coco = json.loads(path.read_text())
        for entry in coco["categories"]:
            entry["id"] = str(entry["id"])
        path.write_text(json.dumps(coco))
    result = run_cli("--src", tmp_path / "src", "--out", tmp_path / "out")
    assert result.returncode == 2 and "every box of the train split was dropped" in result.stderr, result.stderr
    assert "box of a class not imported" in result.stderr and not (tmp_path / "out").exists()


def test_ids_of_the_wrong_kind_are_refused_boxes_not_a_traceback(tmp_path):
    make_dataset(tmp_path / "src", n_images=4, fmt="coco")
    path = tmp_path / "src" / "train" / "annotations.json"
    coco = json.loads(path.read_text())
    coco["annotations"][0]["category_id"] = [1]
    coco["annotations"][1]["image_id"] = [2]
    path.write_text(json.dumps(coco))
    problems = import_dataset("coco", tmp_path / "src", tmp_path / "out")["splits"]["train"]["problems"]
    assert problems["unknown_class"]["count"] == 1 and problems["orphan_box"]["count"] == 1


@pytest.mark.parametrize("categories, message", [
    ([{"id": 1, "name": "acne"}, {"id": 1, "name": "papule"}], "category id 1 is used twice ('acne' and 'papule')"),
    ([{"id": 1, "name": ""}], "category 1 has no name"),
    ([{"id": 1, "name": None}], "category 1 has no name"),
    (["acne"], "a category needs an id (a number) and a name: 'acne'"),
])
def test_coco_categories_that_would_relabel_boxes_are_named(tmp_path, categories, message):
    """A repeated category id gave every box of the first name the second one, in silence; an empty
    or null name made a class called "" or "None"."""
    make_dataset(tmp_path / "src", n_images=4, fmt="coco")
    path = tmp_path / "src" / "train" / "annotations.json"
    coco = json.loads(path.read_text())
    coco["categories"] = categories
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError, match="no usable image"):
        import_dataset("coco", tmp_path / "src", tmp_path / "out")
    result = subprocess.run([sys.executable, "-m", "train.data", "import", "--format", "coco", "--src",
                             str(tmp_path / "src"), "--out", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_odd_coco_values_and_contradicting_options_are_named(tmp_path):
    make_dataset(tmp_path / "src", n_images=4, fmt="coco")
    path = tmp_path / "src" / "train" / "annotations.json"
    coco = json.loads(path.read_text())
    coco["annotations"][0]["bbox"] = "1234"  # read as 1, 2, 3, 4
    coco["annotations"][1]["iscrowd"] = "0"  # dropped as a crowd region
    coco["annotations"][2]["image_id"] = 999  # filed as a box with bad coordinates
    coco["annotations"][3]["bbox"] = [1, 2, 10 ** 400, 4]  # too large for a float: an OverflowError traceback
    path.write_text(json.dumps(coco))
    report = import_dataset("coco", tmp_path / "src", tmp_path / "out")
    problems = report["splits"]["train"]["problems"]
    assert problems["invalid_box"]["count"] == 2 and problems["orphan_box"]["count"] == 1
    assert "crowd_box" not in problems
    for options, message in (({"single_class": " "}, "--single-class needs a class name"),
                             ({"single_class": "acne", "classes": "a,b"}, "contradict each other")):
        with pytest.raises(DataError, match=message):
            import_dataset("coco", tmp_path / "src", tmp_path / "other", **options)
    path.write_text(json.dumps([coco]))
    with pytest.raises(DataError) as refused:
        import_dataset("coco", tmp_path / "src", tmp_path / "other")
    problem = refused.value.report["splits"]["train"]["problems"]["bad_annotation_file"]["files"][0]
    assert "is a JSON object with images, annotations and categories, not a list" in problem
    make_dataset(tmp_path / "yolo", n_images=4, fmt="yolo")
    (tmp_path / "yolo" / "classes.txt").write_text("papule\npustule\npapule\n")
    with pytest.raises(DataError, match=r"names a class twice: \['papule'\]"):
        import_dataset("yolo", tmp_path / "yolo", tmp_path / "other")


def test_the_report_keeps_a_split_imported_on_its_own_before(tmp_path):
    """Splits imported one at a time: each import rewrote import_report.json, losing the record
    (and the problem list) of the split imported before."""
    make_dataset(tmp_path / "ds", n_images=8, fmt="coco")
    out = tmp_path / "out"
    import_dataset("coco", tmp_path / "ds" / "train", out, split="train", classes=CLASSES)
    report = import_dataset("coco", tmp_path / "ds" / "valid", out, split="valid", classes=CLASSES, verbose=True)
    saved = json.loads((out / "import_report.json").read_text())
    assert sorted(saved["splits"]) == ["train", "valid"] == sorted(report["splits"])
    assert saved["splits"]["train"]["src"] == str(tmp_path / "ds" / "train")
    assert saved["splits"]["train"]["images"] == len(load_coco(out / "train")["images"])



def test_an_import_stopped_while_writing_keeps_the_earlier_one_whole(tmp_path, monkeypatch):
    """The same as the Ctrl-C test above, made certain: the copy stops at the fourth image."""
    import train.data

    make_dataset(tmp_path / "src", n_images=8, fmt="coco")
    out = tmp_path / "out"
    import_dataset("coco", tmp_path / "src", out, single_class="lesion")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    copied, copyfile = [], shutil.copyfile

    def copy_then_stop(source, target, **options):
        if len(copied) == 3:
            raise KeyboardInterrupt
        copied.append(copyfile(source, target, **options))

    monkeypatch.setattr(train.data.shutil, "copyfile", copy_then_stop)
    with pytest.raises(KeyboardInterrupt):
        import_dataset("coco", tmp_path / "src", out, overwrite=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["import_report.json", "train", "valid"]


def test_yolo_labels_without_a_photo_shared_labels_pixels_and_subfolders_are_named(tmp_path):
    """Each of these lost boxes or gave a photo another photo's boxes, without a word."""
    truth = make_dataset(tmp_path / "src", n_images=4, fmt="yolo")
    train = tmp_path / "src" / "train"
    photos = [Path(image["file_name"]) for image in truth["splits"]["train"]]
    # A label file whose photo is gone: its boxes are lost, and said so.
    (train / "images" / photos[1].name).unlink()
    boxes_lost = len(truth["splits"]["train"][1]["boxes"])
    # a.jpg and a.png, one a.txt: whose boxes are they?
    shutil.copy(train / "images" / photos[2].name, train / "images" / "a.jpg")
    Image.open(train / "images" / photos[2].name).save(train / "images" / "a.png")
    shutil.copy(train / "labels" / f"{photos[2].stem}.txt", train / "labels" / "a.txt")
    # Pixels instead of fractions of the image size.
    (train / "labels" / f"{photos[0].stem}.txt").write_text("0 160 160 20 20\n")
    # One patient's photos in a subfolder, which the YOLO layout does not read.
    (train / "images" / "patient_a").mkdir()
    write_image(train / "images" / "patient_a", "p1.jpg")
    write_image(train / "images" / "patient_a", "p2.jpg")
    # A label "file" without a photo that cannot be read (here a folder; unreadable files alike): it had
    # ended the whole import with a bare "[Errno 13]".
    (train / "labels" / "zz_ghost.txt").mkdir()

    report = import_dataset("yolo", tmp_path / "src", tmp_path / "out")

    problems = report["splits"]["train"]["problems"]
    assert problems["missing_image"]["files"] == [f"train/labels/{photos[1].stem}.txt (no photo named "
                                                  f"{photos[1].stem}.*; {boxes_lost} boxes)",
                                                  "train/labels/zz_ghost.txt (no photo named zz_ghost.*; "
                                                  "unreadable: Is a directory)"]
    assert problems["shared_label_file"]["files"] == ["train/images/a.jpg (train/labels/a.txt)",
                                                      "train/images/a.png (train/labels/a.txt)"]
    assert problems["bad_annotation_file"]["files"][0].startswith(f"train/labels/{photos[0].stem}.txt (line 1: "
                                                                  f"values above 1")
    assert "look like pixels" in problems["bad_annotation_file"]["files"][0]
    assert problems["unread_subfolder"]["files"] == ["train/images/patient_a/ (2 images)"]
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    assert sorted(found) == [photos[2].name]  # a.jpg and a.png got no one's boxes
    printed = run_cli("--src", str(tmp_path / "src"), "--out", str(tmp_path / "out_cli"))
    assert "not imported: import it on its own" in printed.stdout and "patient_a/ (2 images)" in printed.stdout

    # classes.txt with a blank line inside: line N names class N-1, so dropping it would relabel boxes.
    (tmp_path / "src" / "data.yaml").unlink()
    (tmp_path / "src" / "classes.txt").write_text("comedone\n\npapule\npustule\n\n")
    with pytest.raises(DataError, match=r"classes.txt has blank lines \(2\)"):
        import_dataset("yolo", tmp_path / "src", tmp_path / "out_blank")


def test_voc_difficult_boxes_subfolders_and_the_boxes_of_a_missing_photo_are_counted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    boxes, labels = write_image(src, "a.jpg", n_lesions=3, seed=1)
    write_voc_xml(src / "a.xml", "a.jpg", 320, 320, boxes, labels)
    xml = (src / "a.xml").read_text()
    (src / "a.xml").write_text(xml.replace("</name>", "</name><difficult>1</difficult>", 1))
    boxes, labels = write_image(src, "gone.jpg", n_lesions=4, seed=2)
    write_voc_xml(src / "gone.xml", "gone.jpg", 320, 320, boxes, labels)
    (src / "gone.jpg").unlink()
    (src / "patient_b").mkdir()
    boxes, labels = write_image(src / "patient_b", "b.jpg", seed=3)
    write_voc_xml(src / "patient_b" / "b.xml", "b.jpg", 320, 320, boxes, labels)

    problems = import_dataset("voc", src, tmp_path / "out", classes=CLASSES)["splits"]["train"]["problems"]

    assert (problems["difficult_box"]["count"], problems["difficult_box"]["files"]) == (1, ["a.jpg"])
    assert problems["missing_image"]["files"] == ["gone.xml (gone.jpg; 4 boxes)"]
    assert problems["unread_subfolder"]["files"] == ["patient_b/ (1 image)"]
    assert len(boxes_by_file(load_coco(tmp_path / "out" / "train"))["a.jpg"]) == 3  # the difficult box is kept


def test_a_photo_listed_twice_in_a_coco_file_is_one_image_with_both_entries_boxes(tmp_path):
    src = tmp_path / "src" / "train"
    src.mkdir(parents=True)
    boxes, _ = write_image(src, "face.jpg", n_lesions=2, seed=1)
    images = [{"id": 3, "file_name": "face.jpg", "width": 320, "height": 320},
              {"id": 4, "file_name": "face.jpg", "width": 320, "height": 320},
              {"id": 5, "file_name": "gone.jpg", "width": 320, "height": 320}]
    annotations = [{"id": 1, "image_id": 3, "category_id": 1, "bbox": boxes[0]},
                   {"id": 2, "image_id": 4, "category_id": 1, "bbox": boxes[1]},
                   {"id": 3, "image_id": 5, "category_id": 1, "bbox": boxes[1]}]
    (src / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "papule"}]}))

    problems = import_dataset("coco", tmp_path / "src", tmp_path / "out")["splits"]["train"]["problems"]

    assert problems["image_listed_twice"]["files"] == ["face.jpg (image ids 3 and 4)"]
    assert problems["missing_image"]["files"] == ["gone.jpg (1 boxes)"]
    assert "duplicate_name" not in problems
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    assert list(found) == ["face.jpg"] and len(found["face.jpg"]) == 2


def test_class_names_that_differ_only_in_case_are_refused_not_made_two_types(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, label in (("a.jpg", "papule"), ("b.jpg", "Papule")):
        boxes, _ = write_image(src, name, n_lesions=1, seed=len(label))
        write_voc_xml(src / name.replace(".jpg", ".xml"), name, 320, 320, boxes, [label])
    with pytest.raises(DataError, match="differ only in case would be separate types: Papule and papule"):
        import_dataset("voc", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert import_dataset("voc", src, tmp_path / "one", single_class="acne")["splits"]["train"]["boxes"] == 2


def test_a_file_name_that_is_not_utf8_is_printed_escaped_not_a_traceback(tmp_path):
    """A latin-1 name ("negé.jpg" from an old camera or a Windows share) printed to a terminal that
    takes only UTF-8 (a desktop's en_US.UTF-8) was a UnicodeEncodeError after the data was written."""
    import os

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (64, 64), (200, 150, 130)).save(src / "a.jpg")
    os.rename(src / "a.jpg", os.path.join(os.fsencode(src), b"neg\xe9.jpg"))
    (src / "classes.txt").write_text("acne\n")
    result = subprocess.run([sys.executable, "-m", "train.data", "import", "--format", "yolo", "--src", str(src),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "neg\\udce9.jpg" in result.stdout


def test_a_coco_image_id_of_the_wrong_kind_is_named(tmp_path):
    make_dataset(tmp_path / "src", n_images=4, fmt="coco")
    path = tmp_path / "src" / "train" / "annotations.json"
    coco = json.loads(path.read_text())
    coco["images"][0]["id"] = [1]  # was "unhashable type: 'list'"
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError):
        import_dataset("coco", tmp_path / "src", tmp_path / "out")
    result = subprocess.run([sys.executable, "-m", "train.data", "import", "--format", "coco", "--src",
                             str(tmp_path / "src"), "--out", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "an image entry needs an id (a number) and a file_name: {'id': [1]" in result.stdout + result.stderr


def test_the_generated_data_set_is_never_written_into_an_existing_one(tmp_path):
    """Found in an audit: `python -m tests.synthetic_data` (the README's command) into an imported data
    set replaced its annotations, leaving its photos unlisted."""
    (tmp_path / "acne04" / "train").mkdir(parents=True)
    (tmp_path / "acne04" / "train" / "annotations.json").write_text("{}")
    into = run_module(["tests.synthetic_data", str(tmp_path / "acne04"), "8"], check=False)
    assert into.returncode == 2 and "exists and is not an empty folder" in into.stderr, into.stderr
    assert (tmp_path / "acne04" / "train" / "annotations.json").read_text() == "{}"
    assert run_module(["tests.synthetic_data", str(tmp_path / "new"), "8"]).returncode == 0


# ---------------------------------------------------------------- the importer audit of 2026-11-28

def test_yolo_classes_pick_by_name_where_a_names_file_says_what_each_index_is(tmp_path):
    """--classes pustule had taken index 0 as pustule: papules became pustules, and the real
    pustules were dropped as an unknown index."""
    truth = make_dataset(tmp_path / "src", n_images=8, fmt="yolo")
    report = import_dataset("yolo", tmp_path / "src", tmp_path / "out", classes="pustule")
    assert report["categories"] == ["pustule"]
    for split, images in truth["splits"].items():
        found = boxes_by_file(load_coco(tmp_path / "out" / split))
        for image in images:
            want = [box for name, box in truth_boxes(image) if name == "pustule"]
            assert sum((box for _, box in found[image["file_name"]]), []) == pytest.approx(sum(want, []), abs=0.01)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_a_mistyped_class_is_refused_with_the_name_it_is_close_to(tmp_path, fmt):
    """'Papule' or 'papules' for papule dropped every papule and the import succeeded."""
    make_dataset(tmp_path / "src", n_images=4, fmt=fmt)
    for typed in ("Papule,pustule", "papules,pustule"):
        with pytest.raises(DataError, match=r"--classes names classes that are not those of .*: "
                                            r"'(Papule|papules)': did you mean 'papule'\?"):
            import_dataset(fmt, tmp_path / "src", tmp_path / "out", classes=typed)
    assert not (tmp_path / "out").exists()


def test_boxes_of_a_photo_resized_after_it_was_annotated_are_scaled_to_it(tmp_path):
    """The .xml says 640x640 and its boxes lie in those pixels; the photo was halved to 320 since."""
    src = tmp_path / "src"
    src.mkdir()
    boxes, labels = write_image(src, "halved.jpg", n_lesions=6, seed=3)
    write_voc_xml(src / "halved.xml", "halved.jpg", 640, 640, [[2 * v for v in box] for box in boxes], labels)
    # Its lesions all in the middle, none past the smaller photo: scaled alike (the first rule had not).
    write_image(src, "central.jpg", n_lesions=0, seed=4)
    write_voc_xml(src / "central.xml", "central.jpg", 640, 640, [[200, 200, 40, 40]], ["papule"])
    report = import_dataset("voc", src, tmp_path / "out")
    assert boxes_by_file(load_coco(tmp_path / "out" / "train"))["central.jpg"] == [("papule", [100, 100, 20, 20])]
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))["halved.jpg"]
    want = truth_boxes({"labels": labels, "boxes": boxes})
    assert sum((box for _, box in found), []) == pytest.approx(sum((box for _, box in want), []), abs=0.01)
    assert all("boxes scaled by 0.5" in entry for entry in report["splits"]["train"]["problems"]["size_mismatch"]["files"])


def test_what_no_split_reads_is_named_and_voc_image_sets_make_the_splits(tmp_path):
    truth = make_dataset(tmp_path / "src", n_images=8, fmt="voc")
    write_image(tmp_path / "src", "loose.jpg")
    (tmp_path / "src" / "holdout").mkdir()
    write_image(tmp_path / "src" / "holdout", "kept_apart.jpg")
    report = import_dataset("voc", tmp_path / "src", tmp_path / "out")
    assert report["not_read"] == ["loose.jpg: not in a split folder (train, valid, test)",
                                  "holdout/ (1 image(s)): not in a split folder (train, valid, test)"]
    # The VOC layout: Annotations/ + JPEGImages/ + ImageSets/Main/{train,val}.txt (val is written as valid).
    voc = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    for split, images in truth["splits"].items():
        for image in images:
            stem = Path(image["file_name"]).stem
            shutil.copy(tmp_path / "src" / split / image["file_name"], voc / "JPEGImages")
            shutil.copy(tmp_path / "src" / split / f"{stem}.xml", voc / "Annotations")
        (voc / "ImageSets/Main" / f"{'val' if split == 'valid' else split}.txt").write_text(
            "".join(Path(image["file_name"]).stem + "\n" for image in images))
    write_image(voc / "JPEGImages", "in_no_list.jpg")
    report = import_dataset("voc", voc, tmp_path / "out_voc")
    for split, images in truth["splits"].items():
        assert sorted(image["file_name"] for image in load_coco(tmp_path / "out_voc" / split)["images"]) == sorted(
            image["file_name"] for image in images)
    assert report["not_read"] == ["1 image(s) of JPEGImages/ that no list in ImageSets/Main names, e.g. in_no_list.jpg"]


def test_annotation_files_of_two_formats_are_refused_until_format_says_which(tmp_path):
    """A photo labelled in YOLO among VOC ones had been kept as a negative without a word."""
    make_dataset(tmp_path / "src", n_images=4, fmt="voc")
    write_image(tmp_path / "src" / "train", "stray.jpg")  # labelled in another tool: a YOLO .txt beside it
    (tmp_path / "src" / "train" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "src" / "notes.txt").write_text("labelled by A. on Monday\n")  # text, not a label: decides nothing
    result = run_cli("--src", tmp_path / "src", "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "more than one format" in result.stderr and "--format voc or yolo" in result.stderr
    assert "1 .txt (YOLO), e.g. train/stray.txt" in result.stderr, result.stderr
    assert import_dataset("voc", tmp_path / "src", tmp_path / "out")["categories"] == list(LESION_TYPES)


def test_odd_but_real_layouts_import(tmp_path):
    """COCO's own download (captions and keypoints beside the boxes), a LabelImg folder (annotations/
    + images/), and files that begin with a UTF-8 byte-order mark."""
    truth = make_dataset(tmp_path / "coco", n_images=4, fmt="coco")
    coco2017 = tmp_path / "coco2017"
    (coco2017 / "annotations").mkdir(parents=True)
    shutil.copytree(tmp_path / "coco" / "train", coco2017 / "train2017")
    (coco2017 / "train2017" / "annotations.json").rename(coco2017 / "annotations" / "instances_train2017.json")
    (coco2017 / "annotations" / "captions_train2017.json").write_text('{"images": [], "annotations": []}')
    report = import_dataset(None, coco2017, tmp_path / "out_coco2017")
    assert list(report["splits"]) == ["train"] and report["splits"]["train"]["images"] == len(truth["splits"]["train"])

    labelimg = tmp_path / "labelimg"
    make_dataset(tmp_path / "voc", n_images=4, fmt="voc")
    (labelimg / "annotations").mkdir(parents=True)
    (labelimg / "images").mkdir()
    for path in (tmp_path / "voc" / "train").iterdir():
        shutil.copy(path, labelimg / ("annotations" if path.suffix == ".xml" else "images"))
    report = import_dataset(None, labelimg, tmp_path / "out_labelimg")
    assert report["splits"]["train"]["images"] == len(truth["splits"]["train"])
    assert report["splits"]["train"]["boxes"] == sum(len(image["boxes"]) for image in truth["splits"]["train"])

    make_dataset(tmp_path / "yolo", n_images=4, fmt="yolo")
    plain = import_dataset("yolo", tmp_path / "yolo", tmp_path / "out_yolo")
    for path in [tmp_path / "yolo" / "data.yaml", *(tmp_path / "yolo").glob("*/labels/*.txt")]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (tmp_path / "coco" / "train" / "annotations.json").write_bytes(
        b"\xef\xbb\xbf" + (tmp_path / "coco" / "train" / "annotations.json").read_bytes())
    assert import_dataset("yolo", tmp_path / "yolo", tmp_path / "out_yolo_bom")["splits"] == plain["splits"]
    assert import_dataset("coco", tmp_path / "coco", tmp_path / "out_coco_bom")["splits"]["train"]["boxes"] == sum(
        len(image["boxes"]) for image in truth["splits"]["train"])


def test_a_split_without_one_label_file_is_refused_not_made_negatives(tmp_path):
    make_dataset(tmp_path / "src", n_images=8, fmt="yolo")
    shutil.rmtree(tmp_path / "src" / "valid" / "labels")
    with pytest.raises(DataError, match="no image of the valid split .* has an annotation file"):
        import_dataset("yolo", tmp_path / "src", tmp_path / "out")


def test_overwrite_keeps_files_it_did_not_write_and_a_linked_split_folder(tmp_path):
    make_dataset(tmp_path / "src", n_images=4, fmt="coco")
    import_dataset("coco", tmp_path / "src", tmp_path / "out")
    mine = tmp_path / "out" / "train" / "my_notes.txt"
    mine.write_text("mine")
    with pytest.raises(DataError, match=r"1 file\(s\) that the earlier import did not write \(my_notes.txt\)"):
        import_dataset("coco", tmp_path / "src", tmp_path / "out", overwrite=True)
    assert mine.read_text() == "mine"
    mine.unlink()
    # A split folder that is a link to the user's own folder: the link is replaced, the folder stays.
    (tmp_path / "out" / "train").rename(tmp_path / "elsewhere")
    (tmp_path / "out" / "train").symlink_to(tmp_path / "elsewhere")
    report = import_dataset("coco", tmp_path / "src", tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "train").is_symlink() and (tmp_path / "elsewhere" / "annotations.json").is_file()
    assert json.loads((tmp_path / "out" / "import_report.json").read_text())["splits"] == report["splits"]


def test_transparency_infinite_sizes_and_overlong_names_are_named_not_a_traceback(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    photo = Image.new("RGBA", (64, 64), (200, 150, 130, 255))
    photo.putpixel((0, 0), (0, 0, 0, 0))
    photo.save(src / "cut_out.png")
    Image.new("RGB", (64, 64), (200, 150, 130)).save(src / "plain.png")
    images = [{"id": 1, "file_name": "cut_out.png", "width": 64, "height": 64},
              {"id": 2, "file_name": "plain.png", "width": float("inf"), "height": 64},
              {"id": 3, "file_name": "x" * 300 + ".jpg", "width": 64, "height": 64}]
    annotations = [{"id": n, "image_id": n, "category_id": 1, "bbox": [5, 5, 10, 10]} for n in (1, 2, 3)]
    (src / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "papule"}]}))
    result = run_cli("--src", src, "--out", tmp_path / "out")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    problems = json.loads((tmp_path / "out" / "import_report.json").read_text())["splits"]["train"]["problems"]
    assert problems["transparent_image"]["files"] == ["cut_out.png"]
    assert problems["missing_image"]["files"][0].startswith("xxxxxxxxxx")
    assert load_coco(tmp_path / "out" / "train")["images"][1]["width"] == 64


def test_a_user_s_own_export_imported_split_by_split_keeps_its_classes(tmp_path):
    """From an end-to-end journey: --src pointed at one split of a YOLO export found no data.yaml (it is
    at the export's root), and --classes guessed in another order relabelled every box; a split
    re-imported with other categories than the one kept beside it was only refused by training; two
    mistyped --classes names took two tries; a notes.txt or CVAT's labelmap.txt was taken for YOLO labels."""
    truth = make_dataset(tmp_path / "yolo", n_images=8, fmt="yolo", classes=("pustule", "comedone", "papule"))
    report = import_dataset(None, tmp_path / "yolo" / "train", tmp_path / "out", split="train")
    assert report["categories"] == ["pustule", "comedone", "papule"]  # ../data.yaml's, in its index order
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    for image in truth["splits"]["train"]:
        assert [name for name, _ in found[image["file_name"]]] == [name for name, _ in truth_boxes(image)]
    assert any("no valid split" in note for note in report["notes"])  # training would stop on it
    # The valid split imported on its own with the categories in another order: refused now.
    with pytest.raises(DataError, match=r"out/train \(an earlier import this one keeps\) has the categories "
                                        r"\['pustule', 'comedone', 'papule'\]"):
        import_dataset(None, tmp_path / "yolo" / "valid", tmp_path / "out", split="valid",
                       classes="comedone,papule,pustule")
    import_dataset(None, tmp_path / "yolo" / "valid", tmp_path / "out", split="valid")
    with pytest.raises(DataError, match=r"'Comedone': did you mean 'comedone'\?; 'papules': did you mean 'papule'\?"):
        import_dataset("yolo", tmp_path / "yolo", tmp_path / "out2", classes="Comedone,papules,pustule")

    voc = tmp_path / "voc"
    make_dataset(voc, n_images=4, fmt="voc")
    for name in ("notes.txt", "LICENSE.txt", "labelmap.txt"):  # CVAT's labelmap: not a YOLO label either
        (voc / name).write_text("comedone\npapule\npustule\n")
    assert import_dataset(None, voc, tmp_path / "out3")["format"] == "voc"


def test_yolo_placeholder_names_are_named_by_classes_in_index_order(tmp_path):
    """data.yaml with names 0, 1, 2 and --classes naming them: once --classes picked by name, every box
    was dropped (exit 0); --classes that names none of the file's names names the indices, and says so."""
    truth = make_dataset(tmp_path / "src", n_images=8, fmt="yolo", classes=("0", "1", "2"))
    report = import_dataset("yolo", tmp_path / "src", tmp_path / "out", classes="comedone,papule,pustule")
    assert report["categories"] == ["comedone", "papule", "pustule"]
    assert any("taken as the names of indices 0, 1" in note for note in report["notes"])
    named = dict(zip(("0", "1", "2"), ("comedone", "papule", "pustule")))
    found = boxes_by_file(load_coco(tmp_path / "out" / "train"))
    for image in truth["splits"]["train"]:
        assert sorted(name for name, _ in found[image["file_name"]]) == sorted(named[n] for n in image["labels"])
