"""The original study's experiments: copy-paste, the skin mask, per-group splits, the variant
configs and the comparison runner, on generated data and on the CPU."""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, read_json, run_module
from tests.synthetic_data import GROUPS, LESION_TYPES, make_image

VARIANTS_DIR = REPO / "train" / "configs" / "variants"
VARIANTS = sorted(VARIANTS_DIR.glob("*.py"))
BASE = REPO / "train" / "configs" / "tood_x101-64x4d_fpn_acne04.py"


def _rng(seed=0):
    return np.random.default_rng(seed)


def _face_with_lesions(seed=0, n_lesions=20):
    image, boxes, labels = make_image((320, 320), n_lesions, seed)
    return np.asarray(image).copy(), boxes, [LESION_TYPES.index(label) + 1 for label in labels]


# --------------------------------------------------------------------------------------------
# Copy-paste
# --------------------------------------------------------------------------------------------

def test_pasted_boxes_lie_inside_the_image_over_changed_pixels_and_on_skin():
    from trouble.models.transforms import PatchBank, paste_lesions
    from trouble.skin import skin_mask

    source, boxes, labels = _face_with_lesions(seed=1, n_lesions=25)
    bank = PatchBank(100, _rng())
    bank.add_image(source, boxes, labels, skin_mask(source, strict=True))
    assert len(bank) >= 10

    target = np.asarray(make_image((320, 320), 0, seed=2)[0]).copy()
    target[:, 200:] = (20, 40, 200)  # the right side is a blue background: no lesion may land there
    before = target.copy()
    skin = skin_mask(target, strict=True)
    assert not skin[:, 200:].any() and skin[:, :150].mean() > 0.9
    new_boxes, new_labels = paste_lesions(target, [], bank, 15, skin, _rng(3))

    assert len(new_boxes) >= 8 and set(new_labels) <= {1, 2, 3}
    changed = np.abs(target.astype(int) - before.astype(int)).max(axis=2) > 0
    assert not changed[:, 200:].any()  # nothing pasted off the skin
    for x, y, w, h in new_boxes:
        assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320 and w > 2 and h > 2
        inside = changed[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))]
        assert inside.mean() > 0.9, (x, y, w, h, inside.mean())
        assert x + w <= 200  # on the skin half
    # No pasted lesion lies on another.
    for i, a in enumerate(new_boxes):
        for b in new_boxes[i + 1:]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def test_offline_copy_paste_data_set(synthetic_data, tmp_path):
    from train.copy_paste import main
    from trouble.severity import grade_from_count

    out = tmp_path / "cp"
    grid = tmp_path / "grid.png"
    assert main(["--data", str(synthetic_data), "--out", str(out), "--per-image", "2", "--onto", "negatives",
                 "--lesions", "4-8", "--grid", str(grid)]) == 0
    # A grid it drew is replaced with --overwrite (a PNG it did not draw is refused: below).
    drawn = grid.read_bytes()
    assert main(["--data", str(synthetic_data), "--out", str(tmp_path / "cp2"), "--seed", "1", "--grid", str(grid),
                 "--overwrite"]) == 0 and grid.read_bytes() != drawn
    source = read_json(synthetic_data / "train" / "annotations.json")
    result = read_json(out / "train" / "annotations.json")
    negatives = [im for im in source["images"] if not any(a["image_id"] == im["id"] for a in source["annotations"])]
    generated = [im for im in result["images"] if "copy_paste" in im]
    assert len(generated) == 2 * len(negatives) == 6
    assert len(result["images"]) == len(source["images"]) + len(generated)
    assert result["categories"] == source["categories"]
    assert len({im["id"] for im in result["images"]}) == len(result["images"])
    assert len({a["id"] for a in result["annotations"]}) == len(result["annotations"])

    for image in generated:
        boxes = [a["bbox"] for a in result["annotations"] if a["image_id"] == image["id"]]
        assert 4 <= len(boxes) == image["copy_paste"]["pasted"] <= 8  # negatives: every box is pasted
        assert image["grade"] == grade_from_count(len(boxes))
        pixels = np.asarray(Image.open(out / "train" / image["file_name"]).convert("RGB")).astype(int)
        original = np.asarray(Image.open(synthetic_data / "train" / image["copy_paste"]["source"]).convert("RGB"))
        for x, y, w, h in boxes:
            assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
            box = (slice(int(y), int(np.ceil(y + h))), slice(int(x), int(np.ceil(x + w))))
            # A lesion is there now: far above JPEG re-encoding noise.
            assert np.abs(pixels[box] - original[box]).mean() > 15
    # The valid split is the source's, unchanged; the originals are still in train.
    assert read_json(out / "valid" / "annotations.json") == read_json(synthetic_data / "valid" / "annotations.json")
    assert all((out / "train" / im["file_name"]).is_file() for im in result["images"])
    assert Image.open(grid).size[0] > 320
    # A legend on top says what the colours mean (only the code had said so).
    legend = np.asarray(Image.open(grid).convert("RGB"))[:32]
    from train.copy_paste import ORIGINAL_COLOUR, PASTED_COLOUR
    for colour in (ORIGINAL_COLOUR, PASTED_COLOUR):
        assert (legend == colour).all(axis=2).sum() > 30
    assert (legend < 60).all(axis=2).sum() > 200  # black text

    # Bad input: clear errors, exit code 2, and the source is never touched.
    only_annotated = tmp_path / "only_annotated"
    (only_annotated / "train").mkdir(parents=True)
    for image in source["images"]:
        os.symlink(synthetic_data / "train" / image["file_name"], only_annotated / "train" / image["file_name"])
    annotated = {a["image_id"] for a in source["annotations"]}
    (only_annotated / "train" / "annotations.json").write_text(json.dumps(
        dict(source, images=[im for im in source["images"] if im["id"] in annotated])))
    result = run_module(["train.copy_paste", "--data", str(only_annotated), "--out", str(tmp_path / "x"),
                         "--onto", "negatives"], check=False, timeout=120)
    assert result.returncode == 2 and "no image without annotations" in result.stderr and "--onto all" in result.stderr
    result = run_module(["train.copy_paste", "--data", str(synthetic_data), "--out", str(out)],
                        check=False, timeout=120)
    assert result.returncode == 2 and "--overwrite" in result.stderr and "Traceback" not in result.stderr
    # --overwrite replaces only an earlier copy-paste output, and only once the input has been read:
    # never the source's own split, a folder of other files, or anything when --data is wrong.
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    for data, out_dir, message in ((synthetic_data, synthetic_data / "train", "overlap"),
                                   (synthetic_data, keep, "not an earlier copy-paste output"),
                                   (synthetic_data, keep / "notes.txt", "is a file: give a folder"),
                                   (tmp_path / "typo", out, "not found")):
        result = run_module(["train.copy_paste", "--data", str(data), "--out", str(out_dir), "--onto", "all",
                             "--overwrite"], check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert (synthetic_data / "train" / "annotations.json").is_file() and (keep / "notes.txt").is_file()
    assert (out / "copy_paste_report.json").is_file()
    # An image found missing halfway through (a negative, read only when pasting onto it) leaves the
    # earlier output whole: it was deleted first, and the half-written one could not be replaced.
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_data, broken, symlinks=True)
    negative = next(im for im in source["images"] if im["id"] not in annotated)
    (broken / "train" / negative["file_name"]).unlink()
    result = run_module(["train.copy_paste", "--data", str(broken), "--out", str(out), "--overwrite"], check=False,
                        timeout=120)
    assert result.returncode == 2 and negative["file_name"] in result.stderr, result.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(out.parent.glob(f".{out.name}*"))  # nothing half-written left beside it
    result = run_module(["train.copy_paste", "--data", str(synthetic_data), "--out", str(out), "--overwrite",
                         "--grid", str(keep / "notes.txt" / "grid.png")], check=False, timeout=120)
    assert result.returncode == 2 and "notes.txt is a file" in result.stderr  # before, not after, the data set
    # From an audit: a --grid naming a photo of the data set had replaced it with the grid; a folder, or an
    # existing file without --overwrite, is refused too; an annotations.json of {} is named, not a KeyError.
    photo = synthetic_data / "train" / source["images"][0]["file_name"]
    photo_bytes = photo.read_bytes()
    (tmp_path / "folder.png").mkdir()
    for grid, message in ((photo.with_suffix(".png") if photo.suffix != ".png" else photo, "lies inside the data set"),
                          (tmp_path / "folder.png", "is a folder"), (keep / "notes.txt", "give a .png")):
        result = run_module(["train.copy_paste", "--data", str(synthetic_data), "--out", str(tmp_path / "y"),
                             "--grid", str(grid)], check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    (keep / "grid.png").write_bytes(b"mine")
    result = run_module(["train.copy_paste", "--data", str(synthetic_data), "--out", str(tmp_path / "y"),
                         "--grid", str(keep / "grid.png")], check=False, timeout=120)
    assert result.returncode == 2 and "exists: pass --overwrite" in result.stderr
    # Nor with --overwrite, when the file is not a grid this command drew (it had been replaced).
    result = run_module(["train.copy_paste", "--data", str(synthetic_data), "--out", str(tmp_path / "y"),
                         "--grid", str(keep / "grid.png"), "--overwrite"], check=False, timeout=120)
    assert result.returncode == 2 and "is not marked as a grid this command drew" in result.stderr
    assert photo.read_bytes() == photo_bytes and (keep / "grid.png").read_bytes() == b"mine"
    assert not (tmp_path / "y").exists()
    (broken / "train" / "annotations.json").write_text("{}")
    result = run_module(["train.copy_paste", "--data", str(broken), "--out", str(tmp_path / "y")], check=False,
                        timeout=120)
    assert result.returncode == 2 and "is not a COCO file" in result.stderr and "Traceback" not in result.stderr


def test_copy_paste_makes_no_unchanged_copy_of_a_photo_without_free_skin(synthetic_data, tmp_path):
    """A negative with no skin (here: all blue) gets no copy: an unchanged copy would only count
    that photo twice in training. The report says how many copies were not made."""
    from train.copy_paste import generate

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    source = read_json(data / "train" / "annotations.json")
    annotated = {a["image_id"] for a in source["annotations"]}
    negatives = [im for im in source["images"] if im["id"] not in annotated]
    blue = negatives[0]
    Image.new("RGB", (blue["width"], blue["height"]), (30, 60, 200)).save(data / "train" / blue["file_name"])
    report = generate(data, tmp_path / "cp", per_image=2, onto="negatives", lesions=(4, 8))
    sources = [g["source"] for g in report["generated"]]
    assert blue["file_name"] not in sources
    assert sorted(set(sources)) == sorted(im["file_name"] for im in negatives[1:])
    assert report["copies_not_made_no_free_skin"] == 2 and report["generated_images"] == 2 * (len(negatives) - 1)
    assert all(len(g["pasted_boxes"]) > 0 for g in report["generated"])


def test_lesion_copy_paste_transform_in_an_mmdet_pipeline(synthetic_data):
    from mmengine.registry import init_default_scope
    from mmdet.registry import DATASETS

    import trouble.models  # noqa: F401  registers LesionCopyPaste

    init_default_scope("mmdet")
    dataset_cfg = dict(type="CocoDataset", data_root=str(synthetic_data), ann_file="train/annotations.json",
                       data_prefix=dict(img="train/"), metainfo=dict(classes=LESION_TYPES),
                       filter_cfg=dict(filter_empty_gt=False))
    load = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]
    plain = DATASETS.build(dict(dataset_cfg, pipeline=load))
    pasted = DATASETS.build(dict(dataset_cfg, pipeline=load + [
        dict(type="LesionCopyPaste", prob=1.0, num_pastes=(3, 5), onto="negatives")]))

    np.random.seed(0)
    grew = 0
    for index in range(len(plain)):
        before, after = plain[index], pasted[index]
        n_before, n_after = len(before["gt_bboxes"]), len(after["gt_bboxes"])
        if n_before:  # onto='negatives': annotated images pass unchanged
            assert n_after == n_before and np.array_equal(before["img"], after["img"])
            continue
        if n_after == 0:
            continue  # a negative that came before any lesion was in the bank
        grew += 1
        height, width = after["img"].shape[:2]
        boxes = after["gt_bboxes"].numpy()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert set(after["gt_bboxes_labels"].tolist()) <= {0, 1, 2} and not after["gt_ignore_flags"].any()
        changed = np.abs(after["img"].astype(int) - before["img"].astype(int)).max(axis=2) > 0
        for x0, y0, x1, y1 in boxes:
            assert changed[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))].mean() > 0.9
    assert grew >= 1


# --------------------------------------------------------------------------------------------
# Skin mask
# --------------------------------------------------------------------------------------------

def test_skin_mask_keeps_the_face_and_its_lesions_and_removes_a_blue_background():
    from trouble.models.transforms import MaskNonSkin
    from trouble.skin import skin_mask

    face, boxes, _ = _face_with_lesions(seed=4, n_lesions=30)
    face[:80, :80] = (30, 60, 220)  # a blue background in the corner
    mask = skin_mask(face)
    assert not mask[:60, :60].any()  # blue is not skin (a margin for the dilation)
    rest = np.ones(mask.shape, bool)
    rest[:100, :100] = False
    assert mask[rest].mean() > 0.97  # skin-coloured background is skin
    kept = [(x, y, w, h) for x, y, w, h in boxes if x > 100 or y > 100]  # those not painted over
    assert len(kept) > 20
    for x, y, w, h in kept:  # red lesions inside the face are kept (hole filling)
        assert mask[int(y + h / 2), int(x + w / 2)]

    # strict=True (where lesions may be pasted): lesions are not skin, an enclosed blue square neither.
    enclosed = face.copy()
    enclosed[150:200, 150:200] = (30, 60, 220)
    strict = skin_mask(enclosed, strict=True)
    assert not strict[150:200, 150:200].any()
    assert skin_mask(enclosed)[170:180, 170:180].all()  # the default fills it: an eye stays

    # Almost no skin: the mask is not trusted and nothing is removed.
    assert skin_mask(np.full((100, 100, 3), (30, 60, 220), np.uint8)).all()

    # The pipeline transform works on BGR and blacks out the background only.
    bgr = np.ascontiguousarray(face[:, :, ::-1])
    masked = MaskNonSkin().transform({"img": bgr.copy()})["img"]
    assert (masked[:60, :60] == 0).all() and np.array_equal(masked[rest], bgr[rest])


def test_skin_mask_check_command(synthetic_data, tmp_path):
    result = run_module(["train.skin_mask", "--data", str(synthetic_data), "--split", "train",
                         "--grid", str(tmp_path / "grid.png"), "--json", str(tmp_path / "s.json")], timeout=120)
    summary = read_json(tmp_path / "s.json")
    assert summary["images"] == 12 and summary["lesion_centres_kept"] == 1.0
    assert summary["kept_fraction_mean"] > 0.95  # the generated faces are all skin
    assert (tmp_path / "grid.png").stat().st_size > 0 and "lesion_centres_kept" in result.stdout
    result = run_module(["train.skin_mask", "--data", str(synthetic_data), "--limit", "0"], check=False, timeout=60)
    assert result.returncode == 2 and "--limit must be at least 1, got 0" in result.stderr
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "annotations.json").write_text('{"images": [')
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "train" / "annotations.json").write_text("{}")
    (tmp_path / "folder.png").mkdir()
    for args, message in ((["--data", str(tmp_path / "bad")], "cannot read"),
                          (["--data", str(tmp_path / "empty")], "is not a COCO file"),  # it was a KeyError
                          (["--data", str(synthetic_data), "--grid", str(tmp_path / "grid.xyz")], "give a .png"),
                          # These two were tracebacks after every image was measured.
                          (["--data", str(synthetic_data), "--grid", str(tmp_path / "folder.png")], "is a folder"),
                          (["--data", str(synthetic_data), "--json", str(tmp_path / "s.json" / "x.json")],
                           f"{tmp_path / 's.json'} is a file"),
                          (["--data", str(synthetic_data), "--json", str(tmp_path)], "is a folder"),
                          (["--data", str(synthetic_data), "--json", str(synthetic_data / "train" / "annotations.json")],
                           "lies inside the data set")):
        result = run_module(["train.skin_mask", *args], check=False, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "annotations" in read_json(synthetic_data / "train" / "annotations.json")  # not replaced by a summary


# --------------------------------------------------------------------------------------------
# Per-group splits and scores
# --------------------------------------------------------------------------------------------

def test_per_group_split_counts(synthetic_data, tmp_path):
    from train.experiments import ExperimentError, split_by_group

    split = split_by_group(synthetic_data, tmp_path / "groups")
    assert sorted(split["groups"]) == sorted(GROUPS) and not split["skipped"]
    # 12 train images cycle through the 3 groups; valid images 12..15 are forehead, cheek, chin, forehead.
    expected_valid = {"forehead": 2, "cheek": 1, "chin": 1}
    for split_name in ("train", "valid"):
        source = read_json(synthetic_data / split_name / "annotations.json")
        for group, entry in split["groups"].items():
            coco = read_json(tmp_path / "groups" / group / split_name / "annotations.json")
            members = [im for im in source["images"] if im["group"] == group]
            boxes = sum(1 for a in source["annotations"] if a["image_id"] in {im["id"] for im in members})
            assert len(coco["images"]) == len(members) == entry[f"{split_name}_images"]
            assert len(coco["annotations"]) == boxes == entry[f"{split_name}_boxes"]
            assert {im["group"] for im in coco["images"]} == {group}
            assert sorted(im["id"] for im in coco["images"]) == list(range(1, len(members) + 1))
            assert all((tmp_path / "groups" / group / split_name / im["file_name"]).is_file() for im in coco["images"])
            if split_name == "train":
                assert len(members) == 4
            else:
                assert len(members) == expected_valid[group]

    # By grade: a grade with no valid image is left out, with the reason.
    by_grade = split_by_group(synthetic_data, tmp_path / "grades", key="grade")
    train = read_json(synthetic_data / "train" / "annotations.json")["images"]
    valid = read_json(synthetic_data / "valid" / "annotations.json")["images"]
    valid_grades = {str(im["grade"]) for im in valid}
    assert set(by_grade["groups"]) == valid_grades & {str(im["grade"]) for im in train}
    assert by_grade["skipped"] == {g: "no valid image in this group"
                                   for g in {str(im["grade"]) for im in train} - valid_grades}
    assert by_grade["skipped"]  # the generated valid split has no very severe image
    for grade, entry in by_grade["groups"].items():
        assert entry["train_images"] == sum(1 for im in train if str(im["grade"]) == grade)
    regrouped = read_json(tmp_path / "grades" / "_all_groups" / "valid" / "annotations.json")
    assert {im["group"] for im in regrouped["images"]} == {str(im["grade"]) for im in regrouped["images"]}

    no_groups = read_json(synthetic_data / "train" / "annotations.json")
    for image in no_groups["images"]:
        image.pop("group")
    bare = tmp_path / "bare"
    for split_name in ("train", "valid"):
        (bare / split_name).mkdir(parents=True)
    (bare / "train" / "annotations.json").write_text(json.dumps(no_groups))
    (bare / "valid" / "annotations.json").write_text(json.dumps(no_groups))
    with pytest.raises(ExperimentError, match="carries 'group'.*--group-key grade"):
        split_by_group(bare, tmp_path / "none")


def test_group_scores_from_an_evaluation(synthetic_data):
    """Perfect predictions on the forehead images only: forehead scores 1, chin 0, cheek has no lesion."""
    from train.evaluate import evaluate
    from train.experiments import group_scores

    gt = read_json(synthetic_data / "valid" / "annotations.json")
    forehead = {im["id"] for im in gt["images"] if im["group"] == "forehead"}
    predictions = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
                   for a in gt["annotations"] if a["image_id"] in forehead]
    metrics = evaluate(gt, predictions, 0.3, {"note": "test"})
    assert group_scores(metrics, "forehead") == (pytest.approx(1.0), pytest.approx(1.0))
    assert group_scores(metrics, "chin") == (0.0, 0.0)
    assert group_scores(metrics, "cheek") == (None, None)  # its one valid image has no lesion
    assert group_scores(metrics, "nose") == (None, None)


def test_a_group_whose_valid_images_mark_no_lesion_is_explained(synthetic_data, tmp_path):
    """Its rows read mAP50 n/a: the table says why (nothing to find), as it did not."""
    from argparse import Namespace

    from train.experiments import per_group_table

    untrained = {"status": "skipped", "error": "not trained in this test: only the table is built"}
    table = per_group_table("Per-group models", [], lambda row, split: untrained, synthetic_data, tmp_path,
                            Namespace(group_key="group", smoke=True), 2)
    explained = [note for note in table["notes"] if "mark no lesion" in note]
    assert explained == ["group 'cheek': its 1 valid image(s) mark no lesion, so there is nothing to find and its "
                         "mAP50 is n/a"]


# --------------------------------------------------------------------------------------------
# Variant configs
# --------------------------------------------------------------------------------------------

def test_variants_exist_and_say_which_study_row_they_reproduce():
    names = {path.name for path in VARIANTS}
    assert {"tood_x101_diou.py", "tood_x101_ciou.py", "tood_x101_focal_pafpn.py", "tood_x101_ghmc_pafpn.py",
            "tood_x101_copy_paste.py", "tood_x101_background_removal.py", "atss_swin-l_dyhead.py",
            "centernet_update_r50.py"} <= names
    for path in VARIANTS:
        assert path.read_text().startswith("# Study row"), path.name


# What makes each variant its row, checked on the model built from the full-size config.
FULL_SIZE_CHECKS = {
    "tood_x101_diou.py": lambda m: type(m.bbox_head.loss_bbox).__name__ == "DIoULossFP32",
    "tood_x101_ciou.py": lambda m: type(m.bbox_head.loss_bbox).__name__ == "CIoULossFP32",
    "tood_x101_focal_pafpn.py": lambda m: (type(m.neck).__name__, type(m.bbox_head.loss_cls).__name__)
    == ("PAFPN", "FocalLossTOOD"),
    "tood_x101_ghmc_pafpn.py": lambda m: (type(m.neck).__name__, type(m.bbox_head.loss_cls).__name__)
    == ("PAFPN", "GHMCTOOD"),
    "tood_x101_copy_paste.py": lambda m: type(m.backbone).__name__ == "ResNeXt",
    "tood_x101_background_removal.py": lambda m: type(m.backbone).__name__ == "ResNeXt",
    "atss_swin-l_dyhead.py": lambda m: type(m.backbone).__name__ == "SwinTransformer"
    and sum(p.numel() for p in m.backbone.parameters()) > 150e6,  # Swin-L, not a smaller Swin
    "centernet_update_r50.py": lambda m: type(m.bbox_head).__name__ == "CenterNetUpdateHead",
}


@pytest.mark.parametrize("variant", [p.name for p in VARIANTS])
def test_full_size_variant_config_builds_with_the_project_data(variant, synthetic_data, tmp_path):
    """The config as a GPU run uses it: train.train's data plumbing fills it, and the model builds."""
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    from train.train import build_config, parse_args

    args = parse_args([str(REPO / "train" / "configs" / "variants" / variant), "--data", str(synthetic_data),
                       "--work-dir", str(tmp_path)])
    cfg, classes = build_config(args)
    assert cfg.model.bbox_head.num_classes == len(classes) == 3
    assert cfg.train_dataloader.dataset.data_root == str(synthetic_data.resolve())
    assert cfg.val_evaluator.ann_file == str(synthetic_data.resolve() / "valid" / "annotations.json")
    assert cfg.load_from.startswith("https://download.openmmlab.com/")  # COCO-pretrained, as in the study
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert FULL_SIZE_CHECKS[variant](model), variant


SMOKE_PARTS = {  # in the shrunk model, the part that makes the row must still be there
    "tood_x101_diou.py": ("bbox_head.loss_bbox", "DIoULossFP32"),
    "tood_x101_ciou.py": ("bbox_head.loss_bbox", "CIoULossFP32"),
    "tood_x101_focal_pafpn.py": ("bbox_head.loss_cls", "FocalLossTOOD"),
    "tood_x101_ghmc_pafpn.py": ("bbox_head.loss_cls", "GHMCTOOD"),
    "tood_x101_copy_paste.py": ("neck", "FPN"),
    "tood_x101_background_removal.py": ("neck", "FPN"),
    "atss_swin-l_dyhead.py": ("backbone", "SwinTransformer"),  # the slowest of these on a CPU
    "centernet_update_r50.py": ("bbox_head", "CenterNetUpdateHead"),
}


@pytest.mark.parametrize("variant", [pytest.param(p.name, id=f"{p.name}-slowest" if "swin" in p.name else p.name)
                                     for p in VARIANTS])
def test_variant_trains_on_cpu_at_smoke_size(variant, synthetic_data, tmp_path):
    """--smoke sizes: train.train's config filling, then mmengine trains 2 iterations (the fewest its
    schedule takes) with the row's own losses, neck and pipeline transforms."""
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch
    from mmengine.runner import Runner

    from train.experiments import smoke_config
    from train.train import build_config, parse_args, set_starting_weights

    config = smoke_config(REPO / "train" / "configs" / "variants" / variant, tmp_path / variant)
    args = parse_args([str(config), "--data", str(synthetic_data), "--work-dir", str(tmp_path / "work"),
                       "--iters", "2", "--workers", "0"])
    cfg, _ = build_config(args)
    assert set_starting_weights(cfg, args) == "none (trained from scratch)"
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # evaluation is tested end to end below
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10**6)
    runner = Runner.from_cfg(cfg)
    losses = []
    runner.register_hook(_loss_recorder(losses), priority="LOWEST")
    runner.train()
    assert runner.iter == 2 and len(losses) == 2 and all(np.isfinite(loss) for loss in losses)
    path, type_name = SMOKE_PARTS[variant]
    part = runner.model
    for attribute in path.split("."):
        part = getattr(part, attribute)
    assert type(part).__name__ == type_name
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


def _loss_recorder(losses):
    """An mmengine hook that keeps the total loss of every training iteration."""
    from mmengine.hooks import Hook

    class LossRecorder(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            losses.append(float(outputs["loss"]))

    return LossRecorder()


@pytest.mark.parametrize("config, detector", [(BASE, "TOOD"), (VARIANTS_DIR / "atss_swin-l_dyhead.py", "ATSS"),
                                              (VARIANTS_DIR / "centernet_update_r50.py", "CenterNet")])
def test_each_config_names_its_own_detector_as_its_start(config, detector, tmp_path):
    """Every report says how a model started: an ATSS row's COCO checkpoint is not a TOOD one."""
    from mmengine.config import Config

    from train.train import set_starting_weights

    cfg = Config.fromfile(str(config))
    cfg.load_from = str(tmp_path / "coco.pth")  # the zoo's file, fetched beforehand (no download here)
    import torch

    torch.save({"state_dict": {}}, tmp_path / "coco.pth")  # a stand-in: only its name is reported
    args = argparse.Namespace(from_scratch=False, weights=None, backbone_weights=None, config=str(config))
    assert set_starting_weights(cfg, args) == f"COCO-pretrained {detector} checkpoint {tmp_path / 'coco.pth'}"


def test_study_losses_take_toods_probabilities_and_target_pairs():
    import torch
    from mmdet.models.losses import GHMC, FocalLoss

    from trouble.models.study_losses import FocalLossTOOD, GHMCTOOD

    torch.manual_seed(0)
    probabilities = torch.rand(50, 3).clamp(0.01, 0.99)
    labels = torch.randint(0, 4, (50,))  # 3 is the background
    alignment = torch.rand(50) * (labels < 3)
    weights = torch.ones(50)
    expected = FocalLoss(use_sigmoid=True, activated=True)(probabilities, labels, weights, avg_factor=1.0)
    assert FocalLossTOOD()(probabilities, (labels, alignment), weights, avg_factor=1.0) == pytest.approx(
        float(expected), rel=1e-5)
    ghm = GHMC(bins=30)(torch.logit(probabilities), labels, weights)
    scaled = GHMCTOOD(bins=30)(probabilities, (labels, alignment), weights, avg_factor=1.0)
    assert float(scaled) == pytest.approx(float(ghm) * max(1.0, float(alignment.sum())), rel=1e-5)


def test_amp_keeps_each_rows_losses_and_computes_them_in_float32():
    from mmengine.config import Config

    from train.train import use_float32_parts

    expected = {"tood_x101_diou.py": ("QualityFocalLossFP32", "DIoULossFP32"),
                "tood_x101_ghmc_pafpn.py": ("GHMCTOOD", "GIoULossFP32"),
                "tood_x101_focal_pafpn.py": ("FocalLossTOOD", "GIoULossFP32"),
                "centernet_update_r50.py": (None, "GIoULossFP32")}
    for name, (cls_loss, bbox_loss) in expected.items():
        cfg = Config.fromfile(str(REPO / "train/configs/variants" / name))
        use_float32_parts(cfg)
        head = cfg.model.bbox_head
        if cls_loss:
            assert head.loss_cls.type == cls_loss, name
        assert head.loss_bbox.type == bbox_loss, name
        assert (head.type == "TOODHeadAMP") == name.startswith("tood"), name


# --------------------------------------------------------------------------------------------
# The runner, end to end
# --------------------------------------------------------------------------------------------

def _two_group_copy(synthetic_data, root):
    """The generated data set with two groups, upper (forehead) and lower (cheek, chin), so that each
    group's valid images hold lesions; images are linked, not copied."""
    for split in ("train", "valid"):
        coco = read_json(synthetic_data / split / "annotations.json")
        (root / split).mkdir(parents=True)
        for image in coco["images"]:
            image["group"] = "upper" if image["group"] == "forehead" else "lower"
            os.symlink(synthetic_data / split / image["file_name"], root / split / image["file_name"])
        (root / split / "annotations.json").write_text(json.dumps(coco))
    return root


def test_experiments_smoke_end_to_end_writes_the_tables(synthetic_data, tmp_path):
    """Two comparisons through `python -m train.experiments --smoke`: 4 trainings (the base run serves
    both 'without' and 'all groups'), each evaluated through the shared inference core."""
    data = _two_group_copy(synthetic_data, tmp_path / "data")
    out = tmp_path / "experiments"
    run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke",
                "--runs", "background_removal,per_group"], timeout=900)
    result = read_json(out / "comparison.json")
    assert result["smoke"] is True and list(result["comparisons"]) == ["background_removal", "per_group"]
    background = result["comparisons"]["background_removal"]["rows"]
    assert [row["row"] for row in background] == ["without", "with: MaskNonSkin in training and inference"]
    assert [row["study_mAP50"] for row in background] == [0.446, 0.450]
    per_group = result["comparisons"]["per_group"]["rows"]
    assert [row["row"] for row in per_group] == [
        "lower: model trained on this group only", "lower: one model on all groups",
        "upper: model trained on this group only", "upper: one model on all groups"]
    assert [row["valid_images"] for row in per_group] == [2, 2, 2, 2]
    every_row = background + per_group
    for row in every_row:
        assert row["status"] == "done", row
        assert row["run"] == "smoke (CPU, 2 iterations: numbers mean nothing)"
        assert 0.0 <= row["mAP50"] <= 1.0 and 0.0 <= row["mean_f1"] <= 1.0
    # Each group's own model was evaluated on that group's valid images only.
    for group in ("upper", "lower"):
        metrics = read_json(out / "runs" / f"tood_x101-64x4d_fpn_acne04__group_{group}" / "eval" / "metrics.json")
        assert metrics["data"]["images"] == 2 and list(metrics["groups"]) == [group]
    # The all-groups rows are the base run's per-group scores.
    base = read_json(out / "runs" / "tood_x101-64x4d_fpn_acne04" / "eval" / "metrics.json")
    assert per_group[3]["mAP50"] == base["groups"]["upper"]["coco"]["mAP50"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "tood_x101-64x4d_fpn_acne04", "tood_x101-64x4d_fpn_acne04__group_lower",
        "tood_x101-64x4d_fpn_acne04__group_upper", "tood_x101_background_removal"]

    table = (out / "comparison.md").read_text()
    assert "SMOKE RUN" in table and "## Per-group models" in table and "| 0.450 |" in table
    assert table.count("smoke (CPU, 2 iterations: numbers mean nothing)") == len(every_row)

    # A second call with the same settings reuses the runs instead of training again.
    again = run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke",
                        "--runs", "background_removal"], timeout=300)
    assert again.stdout.count("done (reused)") == 2
    # The comparison not rerun stays in the report, marked as kept (it was dropped from it).
    kept = read_json(out / "comparison.json")
    assert list(kept["comparisons"]) == ["background_removal", "per_group"] and kept["this_run"] == [
        "background_removal"]
    assert kept["comparisons"]["per_group"]["rows"] == per_group
    assert "## Per-group models" in (out / "comparison.md").read_text()
    assert "Kept from an earlier run into this folder" in (out / "comparison.md").read_text()
    assert "--seed 0" in (out / "runs" / "tood_x101_background_removal" / "train.log").read_text().splitlines()[0]
    # Other settings (here more iterations) never delete the finished runs: the rows say so.
    other = run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke", "--iters", "3",
                        "--runs", "background_removal"], check=False, timeout=300)
    assert other.returncode == 1 and other.stdout.count("holds a finished run with other settings (iters)") == 2
    assert "tood_x101_background_removal holds a finished run" in other.stderr  # each failed row, with why
    # The report keeps the finished rows, not the failed rerun's, and says the rerun failed.
    report = read_json(out / "comparison.json")["comparisons"]["background_removal"]
    assert [(row["status"], row.get("kept")) for row in report["rows"]] == [("done", True), ("done", True)]
    assert report["rows"][0]["run"].startswith("smoke (CPU, 2 iterations: numbers mean nothing) (kept from an "
                                               "earlier run into this folder: this rerun failed: failed:")
    assert "this rerun failed" in (out / "comparison.md").read_text()
    # ... and that those kept rows were made with their own settings (2 iterations), not this run's 3.
    kept_banner = (out / "comparison.md").read_text().split("The rows kept from an earlier run")[1]
    assert "were made with other settings than this table's" in kept_banner
    assert "2 training iteration(s)" in kept_banner.split("| row |")[0]
    assert (out / "runs" / "tood_x101_background_removal" / "eval" / "metrics.json").is_file()
    # Nor are runs on other annotations reused (a data set imported again into the same folder).
    valid = read_json(data / "valid" / "annotations.json")
    valid["annotations"] = valid["annotations"][1:]
    (data / "valid" / "annotations.json").write_text(json.dumps(valid))
    edited = run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke",
                         "--runs", "background_removal"], check=False, timeout=300)
    assert edited.returncode == 1 and edited.stdout.count(
        "other settings (annotations_sha256, source_annotations_sha256)") == 2, edited.stdout
    # --fresh replaces a finished run only once the new one has finished: a run that fails (here
    # train.train finds no starting weights there) leaves the earlier one in place, its own log beside it.
    before = (out / "runs" / "tood_x101_background_removal" / "eval" / "metrics.json").read_bytes()
    failed = run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke", "--fresh",
                         "--runs", "background_removal", "--train-args", f"--weights {tmp_path / 'gone.pth'}"],
                        check=False, timeout=300)
    assert failed.returncode == 1, failed.stdout[-1500:] + failed.stderr[-1500:]
    assert (out / "runs" / "tood_x101_background_removal" / "eval" / "metrics.json").read_bytes() == before
    assert str(tmp_path / "gone.pth") in (out / "runs" / "tood_x101_background_removal.failed.log").read_text()
    assert not list((out / "runs").glob(".*"))  # nothing half-written left
    # A run stopped after training (its evaluation crashed) keeps its weights: a rerun without --fresh
    # refuses to replace it (it was deleted as "an unfinished run").
    stopped = out / "runs" / "tood_x101_background_removal"
    (stopped / "eval" / "metrics.json").unlink()
    weights = sorted(stopped.rglob("*.pth"))
    assert weights
    refused = run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke",
                          "--runs", "background_removal"], check=False, timeout=300)
    assert refused.returncode == 1 and "tood_x101_background_removal holds an unfinished run with weights" in \
        refused.stderr and "pass --fresh to replace it" in refused.stderr
    assert sorted(stopped.rglob("*.pth")) == weights


TOOD_ROWS = [BASE] + [p for p in VARIANTS if p.name.startswith("tood_")]


@pytest.mark.parametrize("config", TOOD_ROWS, ids=[p.name for p in TOOD_ROWS])
def test_lite_backbone_keeps_what_makes_each_tood_row(config, tmp_path):
    """--backbone: the compact tier's pretrained backbone in place of ResNeXt-101 + COCO, and
    nothing else of the row changed (losses, neck type, pipelines)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    from train.experiments import lite_backbone_config

    original = Config.fromfile(str(config))
    swapped = Config.fromfile(str(lite_backbone_config(config, tmp_path / config.name, "efficientnet-lite0")))
    assert swapped.model.backbone.type == "EfficientNetLite" and swapped.model.backbone.pretrained
    assert swapped.model.neck.in_channels == [40, 112, 320] and swapped.model.neck.start_level == 0
    assert swapped.model.data_preprocessor.mean == [127.0, 127.0, 127.0]  # Lite's own normalisation
    assert swapped.load_from is None
    assert swapped.model.neck.type == original.model.neck.type
    assert swapped.model.bbox_head == original.model.bbox_head
    assert swapped.train_dataloader.dataset.pipeline == original.train_dataloader.dataset.pipeline
    assert swapped.test_dataloader.dataset.pipeline == original.test_dataloader.dataset.pipeline
    init_default_scope("mmdet")
    model = MODELS.build(swapped.model)
    assert type(model.backbone).__name__ == "EfficientNetLite"


def test_experiments_with_a_lite_backbone_skip_other_detectors(synthetic_data, tmp_path):
    out = tmp_path / "experiments"
    run_module(["train.experiments", "--data", str(synthetic_data), "--out", str(out), "--smoke",
                "--backbone", "efficientnet-lite0", "--runs", "detectors"], timeout=600)
    result = read_json(out / "comparison.json")
    assert result["backbone"] == "efficientnet-lite0"
    tood, atss, centernet = result["comparisons"]["detectors"]["rows"]
    assert tood["status"] == "done" and 0.0 <= tood["mAP50"] <= 1.0
    assert tood["row"] == "TOOD efficientnet-lite0"  # not "TOOD X-101"
    assert (atss["status"], centernet["status"]) == ("skipped", "skipped")
    assert "is for TOOD rows" in atss["run"]
    trained = _read_config(out / "runs" / "tood_x101-64x4d_fpn_acne04" / "resolved_config.py")
    assert trained.model.backbone.type == "EfficientNetLite"
    # A smoke run's backbone has random weights: never called pretrained (it was, beside rows saying so).
    assert ("Backbone: every TOOD row uses the efficientnet-lite0 backbone, with random weights (not the "
            "ImageNet ones)") in (out / "comparison.md").read_text()


def _read_config(path):
    from mmengine.config import Config

    return Config.fromfile(str(path))


def test_experiments_refuses_unknown_comparisons_and_missing_data(tmp_path):
    result = run_module(["train.experiments", "--data", str(tmp_path), "--runs", "bbox_loss,nonsense"],
                        check=False, timeout=120)
    assert result.returncode == 2 and "nonsense" in result.stderr
    result = run_module(["train.experiments", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                         "--runs", "bbox_loss", "--smoke"], check=False, timeout=120)
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "a_file").write_text("")
    result = run_module(["train.experiments", "--data", str(tmp_path), "--out", str(tmp_path / "a_file")],
                        check=False, timeout=120)
    assert result.returncode == 2 and "is a file: give a folder" in result.stderr
    for inside_data in (tmp_path, tmp_path / "reports"):  # the runs would go in among the photos
        result = run_module(["train.experiments", "--data", str(tmp_path), "--out", str(inside_data), "--smoke"],
                            check=False, timeout=120)
        assert result.returncode == 2 and "is, or is inside, --data" in result.stderr
    for train_args, message in (("--budget-minutes 1", "exclude each other"), ('"--x', "No closing quotation"),
                                ("--data=/elsewhere", "--data is set by the experiment runner itself"),
                                # An abbreviation had overridden the runner's own --data in every row.
                                ("--dat /elsewhere", "unrecognized arguments: --dat"),
                                ("--batch-size 0", "--batch-size must be at least 1")):
        result = run_module(["train.experiments", "--data", str(tmp_path), "--smoke", f"--train-args={train_args}"],
                            check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    result = run_module(["train.experiments", "--data", str(tmp_path), "--smoke", "--seed", "-1"], check=False,
                        timeout=120)  # numpy's ValueError traceback, in every row
    assert result.returncode == 2 and "--seed must be from 0 to 2**32 - 1, got -1" in result.stderr
    for split in ("train", "valid"):  # an annotations file of {} was a KeyError once training began
        (tmp_path / "empty" / split).mkdir(parents=True)
        (tmp_path / "empty" / split / "annotations.json").write_text("{}")
    result = run_module(["train.experiments", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o2"),
                         "--smoke", "--runs", "per_group"], check=False, timeout=120)
    assert result.returncode == 2 and "is not a COCO file" in result.stderr and "Traceback" not in result.stderr


def test_per_group_with_a_key_no_image_carries_stops_before_any_training(synthetic_data, tmp_path):
    """It trained every other row first, then skipped the table and exited 0."""
    out = tmp_path / "experiments"
    result = run_module(["train.experiments", "--data", str(synthetic_data), "--out", str(out), "--smoke",
                         "--runs", "bbox_loss,per_group", "--group-key", "gruop"], check=False, timeout=120)
    assert result.returncode == 2 and "no image in" in result.stderr and "carries 'gruop'" in result.stderr
    assert "grade, group" in result.stderr and "choose another --group-key" in result.stderr
    assert "training" not in result.stdout and not (out / "runs").exists()


def test_offline_copy_paste_set_for_the_runner_is_made_once(synthetic_data, tmp_path):
    from train.experiments import copy_paste_data

    out = copy_paste_data(synthetic_data.resolve(), tmp_path / "cp", seed=0)
    report = read_json(out / "copy_paste_report.json")
    assert report["onto"] == "all" and report["generated_images"] == 12 and report["pasted_boxes"] > 12
    stamp = (out / "train" / "annotations.json").stat().st_mtime_ns
    assert copy_paste_data(synthetic_data.resolve(), tmp_path / "cp", seed=0) == out
    assert (out / "train" / "annotations.json").stat().st_mtime_ns == stamp  # not written again
    # The source imported again with other annotations: made again from them, not the stale copy kept.
    source = tmp_path / "source"
    shutil.copytree(synthetic_data, source, symlinks=True)
    out = copy_paste_data(source.resolve(), tmp_path / "cp2", seed=0)
    stamp = (out / "train" / "annotations.json").stat().st_mtime_ns
    train = read_json(source / "train" / "annotations.json")
    train["annotations"] = train["annotations"][1:]
    (source / "train" / "annotations.json").write_text(json.dumps(train))
    assert copy_paste_data(source.resolve(), tmp_path / "cp2", seed=0) == out
    assert (out / "train" / "annotations.json").stat().st_mtime_ns != stamp


def test_a_runs_config_is_compared_by_content():
    """An edited config (here one inheriting the base with another loss weight) is another run, and a
    config mmengine cannot read fails its own row, not the whole comparison."""
    import tempfile

    from train.experiments import ExperimentError, config_digest

    base = REPO / "train" / "configs" / "tood_smoke.py"
    with tempfile.TemporaryDirectory(dir=REPO / "train" / "configs") as folder:
        edited, broken = Path(folder) / "edited.py", Path(folder) / "broken.py"
        edited.write_text("_base_ = '../tood_smoke.py'\nmodel = dict(bbox_head=dict(loss_bbox=dict(loss_weight=3.0)))\n")
        broken.write_text("_base_ = '../no_such_config.py'\n")
        assert config_digest(base) == config_digest(base) != config_digest(edited)
        with pytest.raises(ExperimentError, match="broken.py cannot be read"):
            config_digest(broken)


# --------------------------------------------------------------------------------------------
# From the audit of 2026-11-28
# --------------------------------------------------------------------------------------------

def test_copy_paste_keeps_files_it_did_not_write_and_makes_nothing_without_free_skin(synthetic_data, tmp_path):
    """--overwrite had deleted a user's notes and photos in --out; a data set where no copy got a lesion
    was written (exit 0) or written and then refused (with --grid)."""
    from train.copy_paste import main

    out = tmp_path / "cp"
    assert main(["--data", str(synthetic_data), "--out", str(out), "--onto", "all"]) == 0
    (out / "NOTES.txt").write_text("mine")
    shutil.copy(synthetic_data / "valid" / read_json(synthetic_data / "valid" / "annotations.json")["images"][0][
        "file_name"], out / "train" / "review.jpg")
    assert main(["--data", str(synthetic_data), "--out", str(out), "--onto", "all", "--overwrite"]) == 2
    assert (out / "NOTES.txt").read_text() == "mine" and (out / "train" / "review.jpg").is_file()

    # Negatives that are grey: no skin to paste on. Refused before anything is written.
    grey = tmp_path / "grey"
    shutil.copytree(synthetic_data, grey)
    source = read_json(grey / "train" / "annotations.json")
    annotated = {a["image_id"] for a in source["annotations"]}
    for image in source["images"]:
        if image["id"] not in annotated:
            Image.open(grey / "train" / image["file_name"]).convert("L").convert("RGB").save(
                grey / "train" / image["file_name"])
    result = run_module(["train.copy_paste", "--data", str(grey), "--out", str(tmp_path / "none"),
                         "--grid", str(tmp_path / "none.png")], check=False)
    assert result.returncode == 2 and "no copy got a pasted lesion" in result.stderr, result.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.png").exists()


def test_copy_paste_and_per_group_take_file_names_with_a_folder(synthetic_data, tmp_path):
    """A file_name "sub/x.jpg" (which the project's reader accepts) was a FileNotFoundError traceback."""
    from train.copy_paste import generate
    from train.experiments import split_by_group

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    for split in ("train", "valid"):
        coco = read_json(data / split / "annotations.json")
        (data / split / "sub").mkdir()
        for image in coco["images"]:
            (data / split / image["file_name"]).rename(data / split / "sub" / image["file_name"])
            image["file_name"] = f"sub/{image['file_name']}"
        (data / split / "annotations.json").write_text(json.dumps(coco))
    report = generate(data, tmp_path / "cp", per_image=1, onto="all", lesions=(2, 4))
    assert report["generated_images"] > 0 and (tmp_path / "cp" / "valid" / "sub").is_dir()
    split = split_by_group(data, tmp_path / "groups")
    assert sorted(split["groups"]) == sorted(GROUPS)


def test_group_names_stay_inside_their_folder_and_the_table(tmp_path):
    from train.experiments import _slug, table_lines

    assert [_slug(name) for name in (".", "..", "a|b", "left cheek")] == ["group", "group", "a_b", "left_cheek"]
    row = {"row": "a|b: own model", "valid_images": 2, "mAP50": 0.5, "mean_f1": 0.4, "study_mAP50": None,
           "run": "done", "config": "c.py", "data": "original"}
    lines = table_lines("per_group", {"rows": [row], "notes": []})
    assert lines[2].count("|") == lines[0].count("|")  # one cell each: the group's "|" does not add a column


def test_per_group_without_a_group_in_both_splits_stops_before_training(synthetic_data, tmp_path):
    """The all-groups model trained in full for a table of nothing, and the run exited 0."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    valid = read_json(data / "valid" / "annotations.json")
    for image in valid["images"]:
        image["group"] = "elsewhere"
    (data / "valid" / "annotations.json").write_text(json.dumps(valid))
    out = tmp_path / "experiments"
    result = run_module(["train.experiments", "--data", str(data), "--out", str(out), "--smoke",
                         "--runs", "bbox_loss,per_group"], check=False, timeout=120)
    assert result.returncode == 2 and "no group by 'group' has both train and valid images" in result.stderr
    assert "valid: elsewhere" in result.stderr and not (out / "runs").exists()


def test_a_row_stopped_partway_is_trained_again_and_another_commands_weights_are_kept(tmp_path):
    from train.experiments import run_training

    settings = {"config": "none.py", "seed": 0, "train_args": [], "iters": None}
    work = tmp_path / "runs" / "row"
    work.mkdir(parents=True)
    (work / "epoch_1.pth").write_bytes(b"weights")
    (work / "experiment_started.json").write_text(json.dumps({**settings, "seed": 1}))
    other = run_training(tmp_path / "none.py", tmp_path, work, settings, fresh=False)
    assert other["status"] == "failed" and "delete that folder to train this row again" in other["error"]
    assert (work / "epoch_1.pth").is_file()
    # The same row's own start: trained again (here it fails at once, on a config that is not there).
    (work / "experiment_started.json").write_text(json.dumps(settings))
    again = run_training(tmp_path / "none.py", tmp_path, work, settings, fresh=False)
    assert "unfinished run" not in again["error"] and not (work / "epoch_1.pth").exists()


def test_lesion_copy_paste_refuses_numbers_it_cannot_paste_with():
    import trouble.models  # noqa: F401  registers LesionCopyPaste
    from trouble.models.transforms import LesionCopyPaste

    assert LesionCopyPaste(num_pastes=5).num_pastes == (5, 5)
    for options in ({"num_pastes": (5, 3)}, {"num_pastes": (0, 0)}, {"num_pastes": (-3, -1)}, {"bank_size": 0}):
        with pytest.raises(ValueError, match="LesionCopyPaste: "):
            LesionCopyPaste(**options)
