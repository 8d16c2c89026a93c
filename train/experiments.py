r"""Rerun the original study's comparisons and write one table per comparison, in the study's form.

    python -m train.experiments --data data/acne04 --out reports/experiments \
        --runs copy_paste,background_removal,bbox_loss,cls_loss,detectors,per_group \
        [--smoke] [--iters N] [--train-args "--batch-size 16 --amp --fast"] [--fresh] \
        [--backbone efficientnet-lite0]

Comparisons (the study's mAP50 in brackets):
    copy_paste           without (0.446) / with, as the LesionCopyPaste transform / with, as an
                         offline copy-paste data set written by train.copy_paste (0.480)
    background_removal   without (0.446) / with MaskNonSkin in the train and test pipelines (0.450)
    bbox_loss            GIoU (0.493) / DIoU (0.491) / CIoU (0.488)
    cls_loss             Focal (0.485) / GHM-C (0.485), both with a PAFPN neck
    detectors            TOOD X-101 (0.493) / ATSS Swin-L DyHead (0.468) / CenterNet++ (0.425)
    per_group            per image group: a model trained on that group alone against one model
                         trained on all groups, both evaluated on the group's valid images

Each row is one `python -m train.train CONFIG` run (configs in train/configs/variants/, the base
is train/configs/tood_x101-64x4d_fpn_acne04.py), evaluated on the valid split by train.evaluate
(mAP50, and mean F1 at the model's score thresholds, 0.3 by default). Rows with the same config
and data are trained once: the base run serves the GIoU, TOOD X-101 and both "without" rows.
Nothing is archived: model_store/ is left alone.

Output in --out: comparison.md and comparison.json (the tables), runs/<run>/ (each run's work
dir, its train.log and eval/), data/ (the copy-paste and per-group data sets). A run whose work
dir holds the results of the same settings (and the same config and annotations, by content) is
reused; --fresh trains everything again.

--smoke (for CPUs and tests): every model is shrunk to a toy (ResNet-18 at 1/4 width, or a
4-block Swin in place of Swin-L), images to 256 px, random weights, 2 iterations (the fewest
train.train's schedule takes; --iters to change). Each row then proves only that its config
builds, trains and evaluates, and the table says so on every row: never read smoke numbers as
results. Without --smoke the configs run as written: a GPU, and the COCO checkpoints of the
mmdet model zoo (downloaded; offline, add --train-args=--from-scratch and expect far less: one option
alone needs the "=", or argparse takes it for an option of its own).

--backbone efficientnet-lite0 (or -lite2): the TOOD rows train with the compact tier's
ImageNet-pretrained backbone in place of ResNeXt-101 and without a COCO checkpoint, which is what
learns in minutes where nothing can be downloaded (on a GPU machine, add --train-args
"--backbone-weights FILE" for a local copy of the weights). The other detectors' rows are skipped.
Compare such rows with each other, not with the study's column.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from train import REPO, file_in_place_of_folder
from train.data import DataError, load_coco, read_split

CONFIGS = REPO / "train" / "configs"
BASE = CONFIGS / "tood_x101-64x4d_fpn_acne04.py"
VARIANTS = CONFIGS / "variants"
SMOKE_IMAGE_SIZE = 256
SMOKE_ITERS = 2  # train.train cannot schedule --iters 1 (its warmup and cosine phases need 2)


class ExperimentError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


class RowSkipped(ExperimentError):
    """A row that does not apply to this run's settings (e.g. --backbone on a non-TOOD detector)."""


@dataclass
class Row:
    label: str
    config: Path
    study: float | None          # the original study's mAP50 for this row, None where it gives none
    # "original" (--data), "copy_paste" (the offline copy-paste set), "group:<name>" (one group's
    # data set) or "regrouped" (all of --data, grouped by --group-key)
    data: str = "original"


COMPARISONS = {
    "copy_paste": ("Copy & paste augmentation", [
        Row("without", BASE, 0.446),
        Row("with: LesionCopyPaste transform in the train pipeline", VARIANTS / "tood_x101_copy_paste.py", None),
        Row("with: offline copy-paste data set (train.copy_paste)", BASE, 0.480, data="copy_paste"),
    ]),
    "background_removal": ("Background removal (skin mask)", [
        Row("without", BASE, 0.446),
        Row("with: MaskNonSkin in training and inference", VARIANTS / "tood_x101_background_removal.py", 0.450),
    ]),
    "bbox_loss": ("Box regression loss", [
        Row("GIoU", BASE, 0.493),
        Row("DIoU", VARIANTS / "tood_x101_diou.py", 0.491),
        Row("CIoU", VARIANTS / "tood_x101_ciou.py", 0.488),
    ]),
    "cls_loss": ("Classification loss, with a PAFPN neck", [
        Row("Focal", VARIANTS / "tood_x101_focal_pafpn.py", 0.485),
        Row("GHM-C", VARIANTS / "tood_x101_ghmc_pafpn.py", 0.485),
    ]),
    "detectors": ("Detector", [
        Row("TOOD X-101", BASE, 0.493),
        Row("ATSS Swin-L DyHead", VARIANTS / "atss_swin-l_dyhead.py", 0.468),
        Row("CenterNet++ (mmdet CenterNet update, R-50)", VARIANTS / "centernet_update_r50.py", 0.425),
    ]),
    "per_group": ("Per-group models against one model on all groups", []),  # rows come from the data
}
NOTES = {
    "copy_paste": "The study gives one figure for copy-paste, from pasting onto images (offline); the "
                  "transform row has none. Its 0.446 baseline predates its 0.493 TOOD X-101 row: here "
                  "every 'without', GIoU and TOOD X-101 row is the same run of the base config.",
    "background_removal": "The mask runs in the test pipeline too, so evaluation (through the shared "
                          "inference core) sees masked photos, as a served model would.",
    "cls_loss": "TOOD's own classification loss is Quality Focal Loss; these rows replace it (and FPN by "
                "PAFPN) through the adapters in trouble/models/study_losses.py.",
    "detectors": "ATSS and CenterNet use mmdet's models unchanged, with this project's data pipeline, "
                 "schedule and evaluation.",
    "per_group": "Each group's rows are scored on that group's valid images only; the all-groups model "
                 "is one run, scored per group. The study gives no figure for this comparison.",
}


# --------------------------------------------------------------------------------------------
# --backbone: a TOOD row on the compact tier's ImageNet-pretrained backbone
# --------------------------------------------------------------------------------------------

LITE_CONFIGS = {"efficientnet-lite0": CONFIGS / "tood_efficientnet-lite0_fpn_acne04.py",
                "efficientnet-lite2": CONFIGS / "tood_efficientnet-lite2_fpn_acne04.py"}


def lite_backbone_config(config_path: Path, out_path: Path, backbone: str) -> Path:
    """Write a copy of a TOOD row's config with the Lite config's backbone, normalisation, neck
    inputs and learning rate, and no COCO checkpoint. What makes the row (losses, neck type,
    pipelines) stays."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config_path))
    if cfg.model.type != "TOOD":
        raise RowSkipped(f"--backbone {backbone} is for TOOD rows; this row is {cfg.model.type}")
    lite = Config.fromfile(str(LITE_CONFIGS[backbone]))
    cfg.model.backbone = lite.model.backbone
    cfg.model.data_preprocessor = lite.model.data_preprocessor
    neck = cfg.model.neck[0] if isinstance(cfg.model.neck, list) else cfg.model.neck
    neck.in_channels, neck.start_level = lite.model.neck.in_channels, lite.model.neck.start_level
    cfg.optim_wrapper.optimizer.lr = lite.optim_wrapper.optimizer.lr
    cfg.load_from = None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(out_path))
    return out_path


# --------------------------------------------------------------------------------------------
# Smoke configs: the same config, shrunk to a toy that a CPU trains in seconds
# --------------------------------------------------------------------------------------------

def smoke_config(config_path: Path, out_path: Path, image_size: int = SMOKE_IMAGE_SIZE) -> Path:
    """Write a shrunk copy of a config: tiny backbone, neck and head, small images, random weights.

    Everything else (detector type, losses, neck type, pipelines and their transforms) stays, so
    the smoke run exercises the parts that make the row different.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(str(config_path))
    model = cfg.model
    backbone_channels = _shrink_backbone(model.backbone)
    necks = model.neck if isinstance(model.neck, list) else [model.neck]
    channels = backbone_channels  # what the next neck receives
    for neck in necks:
        if neck.type in ("FPN", "PAFPN"):
            neck.in_channels, neck.out_channels = channels, 32
            neck.pop("init_cfg", None)
        elif neck.type == "DyHead":
            neck.in_channels, neck.out_channels, neck.num_blocks = 32, 32, 1
        else:
            raise ExperimentError(f"{config_path}: --smoke does not know how to shrink neck {neck.type}")
        channels = 32
    head = model.bbox_head
    head.in_channels = 32
    head.feat_channels = 32
    if head.get("stacked_convs", 0) > 2:
        head.stacked_convs = 2
    if head.type in ("TOODHead", "TOODHeadAMP"):
        # Start in TOOD's task-aligned phase, so that the classification loss of the row runs at once.
        model.train_cfg.initial_epoch = 0
    model.test_cfg.nms_pre = 300
    model.test_cfg.max_per_img = 100

    cfg.load_from = None
    cfg.from_scratch = True  # read by train.train: random weights, said in every report
    cfg.image_size = (image_size, image_size)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].batch_size = 2
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
        for step in cfg[loader].dataset.pipeline:
            if "scale" in step:
                step.scale = (image_size, image_size)
            if "crop_size" in step:
                step.crop_size = (image_size, image_size)
    cfg.train_pipeline = cfg.train_dataloader.dataset.pipeline
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.default_hooks.logger.interval = 1
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(out_path))
    return out_path


def _shrink_backbone(backbone) -> list[int]:
    """Make the backbone a toy in place; return its output channels."""
    backbone.init_cfg = None
    if backbone.type in ("ResNet", "ResNeXt"):
        style = backbone.get("style", "pytorch")
        out_indices = tuple(backbone.get("out_indices", (0, 1, 2, 3)))
        backbone.clear()
        backbone.update(type="ResNet", depth=18, base_channels=16, num_stages=4, out_indices=out_indices,
                        frozen_stages=-1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False,
                        style=style, init_cfg=None)
        return [16 * 2 ** i for i in out_indices]
    if backbone.type == "SwinTransformer":
        out_indices = tuple(backbone.out_indices)
        backbone.update(embed_dims=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=4,
                        drop_path_rate=0.0, pretrain_img_size=SMOKE_IMAGE_SIZE, convert_weights=False)
        return [24 * 2 ** i for i in out_indices]
    if backbone.type == "EfficientNetLite":
        backbone.pretrained = False
        return list({"efficientnet-lite0": [40, 112, 320], "efficientnet-lite2": [48, 120, 352]}[backbone.model_name])
    raise ExperimentError(f"--smoke does not know how to shrink backbone {backbone.type}")


# --------------------------------------------------------------------------------------------
# Per-group data sets
# --------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    """A group's folder name: "." and ".." (groups named so) would be the folder itself or its parent."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "group"


def _link(source: Path, target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)  # a file_name with a folder in it ("sub/x.jpg")
    if not (target.exists() or target.is_symlink()):
        try:
            os.symlink(source.resolve(), target)
        except OSError:  # a file system without symlinks
            shutil.copy2(source, target)


def _write_split(data_dir: Path, split: str, coco: dict, images: list, out_split: Path, group_of=None):
    """A COCO split holding `images` (renumbered from 1), their boxes, and links to their files."""
    out_split.mkdir(parents=True, exist_ok=True)
    new_id = {image["id"]: k for k, image in enumerate(images, 1)}
    new_images = []
    for image in images:
        record = dict(image, id=new_id[image["id"]])
        if group_of is not None:
            record["group"] = group_of(image)
        new_images.append(record)
        _link(data_dir / split / image["file_name"], out_split / image["file_name"])
    annotations = [dict(a, id=k, image_id=new_id[a["image_id"]])
                   for k, a in enumerate((a for a in coco["annotations"] if a["image_id"] in new_id), 1)]
    (out_split / "annotations.json").write_text(json.dumps(dict(coco, images=new_images, annotations=annotations)))
    return len(new_images), len(annotations)


def _group_value(image: dict, key: str):
    value = image.get(key)
    return None if value is None else str(value)


def check_groups(splits: dict, data_dir: Path, key: str):
    """ExperimentError when no train image carries `key` (naming the fields they do carry), or no
    group has both train and valid images: found before any row trains."""
    train, path = splits["train"], data_dir / "train" / "annotations.json"
    groups = {split: {_group_value(im, key) for im in coco["images"]} - {None} for split, coco in splits.items()}
    if groups["train"] and not groups["train"] & groups["valid"]:  # a table of nothing, after training
        raise ExperimentError(f"no group by '{key}' has both train and valid images in {data_dir} (train: "
                              f"{', '.join(sorted(groups['train'])[:10])}; valid: "
                              f"{', '.join(sorted(groups['valid'])[:10]) or 'none'}): per-group training scores "
                              f"each group's own model on that group's valid images")
    if groups["train"]:
        return
    fields = sorted({name for im in train["images"] for name, value in im.items() if value is not None}
                    - {"id", "file_name", "width", "height"})
    hint = ("import the data with --group-from-filename or --group-csv (train.data), or pass "
            "--group-key grade" if key == "group" else "choose another --group-key")
    raise ExperimentError(f"no image in {path} carries '{key}' (they carry: {', '.join(fields) or 'nothing more'}): "
                          f"{hint}")


def split_by_group(data_dir: Path, out_dir: Path, key: str = "group") -> dict:
    """Write one data set per image group (train and valid), and return what was written.

    Returns {"groups": {group: {"path", "train_images", "valid_images", "train_boxes", "valid_boxes"}},
    "skipped": {group: reason}, "regrouped": path or None}. With key != "group" (e.g. "grade"), a
    copy of the whole data set with "group" set from that key is written too ("regrouped"), so the
    all-groups model is evaluated per that key.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    splits = {}
    for split in ("train", "valid"):
        path = data_dir / split / "annotations.json"
        if not path.is_file():
            raise ExperimentError(f"{path} not found: per-group training needs train/ and valid/ splits")
        try:
            splits[split] = load_coco(path)
        except DataError as error:
            raise ExperimentError(str(error)) from None
    check_groups(splits, data_dir, key)

    names = sorted({_group_value(im, key) for s in splits.values() for im in s["images"]} - {None})
    slugs = {}
    for name in names:  # one folder per group: "left cheek" and "left_cheek" would share one
        slugs.setdefault(_slug(name), []).append(name)
    clashing = [found for found in slugs.values() if len(found) > 1]
    if clashing:
        raise ExperimentError(f"the groups {clashing[0]} would share the folder {_slug(clashing[0][0])}: "
                              f"rename one of them in the data")
    result = {"key": key, "groups": {}, "skipped": {}, "regrouped": None}
    for name in names:
        members = {split: [im for im in coco["images"] if _group_value(im, key) == name]
                   for split, coco in splits.items()}
        if not members["train"] or not members["valid"]:
            missing = "train" if not members["train"] else "valid"
            result["skipped"][name] = f"no {missing} image in this group"
            continue
        group_dir = out_dir / _slug(name)
        entry = {"path": str(group_dir)}
        for split, images in members.items():
            n_images, n_boxes = _write_split(data_dir, split, splits[split], images, group_dir / split,
                                             group_of=lambda im: _group_value(im, key))
            entry[f"{split}_images"], entry[f"{split}_boxes"] = n_images, n_boxes
        result["groups"][name] = entry
    if key != "group":
        regrouped = out_dir / "_all_groups"
        for split, coco in splits.items():
            _write_split(data_dir, split, coco, coco["images"], regrouped / split,
                         group_of=lambda im: _group_value(im, key) or "(none)")
        result["regrouped"] = str(regrouped)
    return result


def group_scores(metrics: dict, group: str):
    """(mAP50, mean F1) of one group in a metrics.json, (None, None) when it is not there."""
    entry = (metrics.get("groups") or {}).get(group)
    if entry is None:
        return None, None
    return entry["coco"]["mAP50"], entry["at_thresholds"]["mean_f1"]


# --------------------------------------------------------------------------------------------
# Running one training
# --------------------------------------------------------------------------------------------

def config_digest(config: Path) -> str:
    """SHA-256 of the config as mmengine resolves it (its _base_ files included); ExperimentError,
    failing only its row, for a config mmengine cannot read."""
    from mmengine.config import Config

    try:
        resolved = json.dumps(Config.fromfile(str(config)).to_dict(), sort_keys=True, default=str)
    except Exception as error:  # noqa: BLE001  a bad _base_, a syntax error: mmengine raises many kinds
        raise ExperimentError(f"{config} cannot be read: {type(error).__name__}: {error}") from None
    return hashlib.sha256(resolved.encode()).hexdigest()


def annotations_digest(data_dir: Path) -> str:
    """SHA-256 of the train and valid annotations (the photos are taken to stay as they are)."""
    digest = hashlib.sha256()
    for split in ("train", "valid"):
        digest.update((data_dir / split / "annotations.json").read_bytes())
    return digest.hexdigest()


def run_training(config: Path, data_dir: Path, work_dir: Path, settings: dict, fresh: bool) -> dict:
    """Train and evaluate one row (or reuse an earlier identical run). Returns its record."""
    marker = work_dir / "experiment_run.json"
    metrics_path = work_dir / "eval" / "metrics.json"
    if not fresh and marker.is_file() and metrics_path.is_file():
        earlier = json.loads(marker.read_text())
        if earlier == settings:
            return dict(_read_results(work_dir), reused=True)
        # A finished run with other settings (e.g. a GPU run, before a smoke run) is never deleted unasked.
        changed = sorted(key for key in set(earlier) | set(settings) if earlier.get(key) != settings.get(key))
        older = "" if "config_sha256" in earlier else "; it was recorded before runs were compared by content"
        return {"status": "failed", "log": str(work_dir / "train.log"),
                "error": f"{work_dir} holds a finished run with other settings ({', '.join(changed)}{older}): "
                         f"choose another --out, or pass --fresh to replace it"}
    checkpoints = sorted(work_dir.rglob("*.pth")) if work_dir.is_dir() else []
    started = work_dir / "experiment_started.json"
    if not fresh and checkpoints:  # (a finished run has been dealt with above)
        if started.is_file() and _read_json_or_none(started) == settings:
            # This very row, stopped partway (Ctrl-C): trained again, as the interruption said it would be.
            print(f"[experiments] {work_dir} holds this row's run, stopped partway: training it again", flush=True)
        else:  # weights of other or unknown settings took their own training's time: not deleted unasked
            return {"status": "failed", "log": str(work_dir / "train.log"),
                    "error": f"{work_dir} holds an unfinished run with weights ({checkpoints[0].relative_to(work_dir)}) "
                             f"of other settings: delete that folder to train this row again, choose another --out, "
                             f"or pass --fresh to train every row again"}
    # A finished run that --fresh replaces is moved aside, and deleted only once the new run has
    # finished: stopped partway (Ctrl-C, a crash), the earlier run is put back.
    earlier = work_dir.with_name(f".{work_dir.name}.replaced")
    shutil.rmtree(earlier, ignore_errors=True)
    if marker.is_file() and metrics_path.is_file():
        work_dir.rename(earlier)
    elif work_dir.exists():
        shutil.rmtree(work_dir)  # an unfinished run without weights (a failed start: its log), or --fresh
    work_dir.mkdir(parents=True)
    try:
        record = _train_and_evaluate(config, data_dir, work_dir, settings, marker, metrics_path)
    except BaseException:
        if earlier.exists():
            shutil.rmtree(work_dir, ignore_errors=True)
            earlier.rename(work_dir)
        raise
    if record["status"] == "failed" and earlier.exists():  # the earlier run stays, beside the failed one's log
        failed_log = work_dir.with_name(f"{work_dir.name}.failed.log")
        shutil.copyfile(work_dir / "train.log", failed_log)
        shutil.rmtree(work_dir)
        earlier.rename(work_dir)
        record["log"] = str(failed_log)
    else:
        shutil.rmtree(earlier, ignore_errors=True)
    return record


def _read_json_or_none(path: Path):
    """A small record this runner wrote, or None where it is cut short (a run killed while writing it)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _train_and_evaluate(config: Path, data_dir: Path, work_dir: Path, settings: dict, marker: Path,
                        metrics_path: Path) -> dict:
    """Run train.train for one row in work_dir (its log there) → its record."""
    command = [sys.executable, "-m", "train.train", str(config), "--data", str(data_dir),
               "--work-dir", str(work_dir), "--no-archive", "--seed", str(settings["seed"])] + settings["train_args"]
    if settings["iters"]:
        command += ["--iters", str(settings["iters"]), "--val-interval", str(settings["iters"])]
    log_path = work_dir / "train.log"
    (work_dir / "experiment_started.json").write_text(json.dumps(settings, indent=2))  # whose weights these are
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        finished = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0 or not metrics_path.is_file():
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        return {"status": "failed", "error": reason[-300:], "log": str(log_path)}
    marker.write_text(json.dumps(settings, indent=2))
    return dict(_read_results(work_dir), reused=False)


def _read_results(work_dir: Path) -> dict:
    metrics = json.loads((work_dir / "eval" / "metrics.json").read_text())
    meta = json.loads((work_dir / "run_meta.json").read_text())
    return {"status": "done", "mAP50": metrics["coco"]["mAP50"], "mean_f1": metrics["at_thresholds"]["mean_f1"],
            "metrics": metrics, "work_dir": str(work_dir), "log": str(work_dir / "train.log"),
            "iterations": meta["iterations"], "device": meta["device"], "pretrained": meta["pretrained"],
            "train_minutes": meta["train_minutes"]}


# --------------------------------------------------------------------------------------------
# The comparisons
# --------------------------------------------------------------------------------------------

def run_experiments(args) -> dict:
    """Train and evaluate the rows of args.runs, write the report → this run's tables."""
    data_dir, out_dir = Path(args.data).resolve(), Path(args.out).resolve()
    splits = {}
    for split in ("train", "valid"):  # checked, and their images present, before the first row
        try:
            splits[split] = read_split(data_dir, split)
        except DataError as error:
            raise ExperimentError(str(error)) from None
    train_args = shlex.split(args.train_args or "")
    if args.smoke:
        train_args += ["--workers", "0"]
    iters = args.iters or (SMOKE_ITERS if args.smoke else None)
    if "per_group" in args.runs:  # before any training: hours of rows, then "skipped", help no one
        check_groups(splits, data_dir, args.group_key)
    out_dir.mkdir(parents=True, exist_ok=True)

    runs = {}  # (config, data) -> record: each distinct training happens once
    source_annotations = annotations_digest(data_dir)  # read once: every row's settings hold it

    def data_for(row: Row, group_split: dict | None) -> Path:
        if row.data == "original":
            return data_dir
        if row.data == "copy_paste":
            return copy_paste_data(data_dir, out_dir / "data" / "copy_paste", args.seed)
        if row.data == "regrouped":
            return Path(group_split["regrouped"])
        return Path(group_split["groups"][row.data.split(":", 1)[1]]["path"])

    def train_row(comparison: str, row: Row, group_split=None) -> dict:
        key = (str(row.config), row.data)
        if key in runs:
            return runs[key]
        name = row.config.stem if row.data == "original" else f"{row.config.stem}__{_slug(row.data)}"
        work_dir = out_dir / "runs" / name
        try:
            config = row.config
            if args.backbone:
                config = lite_backbone_config(config, out_dir / "lite_configs" / f"{row.config.stem}.py",
                                              args.backbone)
            if args.smoke:
                config = smoke_config(config, out_dir / "smoke_configs" / f"{row.config.stem}.py")
            row_data = data_for(row, group_split)
            contents = {"config_sha256": config_digest(config), "annotations_sha256": annotations_digest(row_data),
                        "source_annotations_sha256": source_annotations}
        except ExperimentError as error:
            runs[key] = {"status": "skipped" if isinstance(error, RowSkipped) else "failed", "error": str(error)}
            return runs[key]
        # What decides the result; an earlier run in --out is reused only when all of it is equal:
        # the contents too, so that an edited config or a re-imported data set trains again.
        settings = {"config": str(row.config), "data": row.data, "data_dir": str(row_data),
                    "source_data": str(data_dir), "smoke": args.smoke, "iters": iters,
                    "train_args": train_args, "seed": args.seed, "backbone": args.backbone, **contents}
        print(f"[experiments] {comparison} / {row.label}: training {_relative(config)} (log: {work_dir / 'train.log'})",
              flush=True)
        record = run_training(config, row_data, work_dir, settings, args.fresh)
        shown = f"mAP50 {_fmt(record.get('mAP50'))}" if record["status"] == "done" else record["error"]
        print(f"[experiments]   {record['status']}{' (reused)' if record.get('reused') else ''}: {shown}",
              flush=True)
        runs[key] = record
        return record

    tables = {}
    for comparison in args.runs:
        title, rows = COMPARISONS[comparison]
        notes = [NOTES[comparison]] if comparison in NOTES else []
        if comparison == "per_group":
            tables[comparison] = per_group_table(title, notes, lambda row, groups: train_row(comparison, row, groups),
                                                 data_dir, out_dir, args, iters)
            continue
        # "TOOD X-101" trained with another backbone is named by it (the study's figure stays beside it).
        table_rows = [_table_row(row.label.replace("X-101", args.backbone) if args.backbone else row.label,
                                 row.config, row.study, train_row(comparison, row), args.smoke, iters, data=row.data)
                      for row in rows]
        tables[comparison] = {"title": title, "rows": table_rows, "notes": notes}

    settings = {"data": str(data_dir), "smoke": args.smoke, "iterations": iters, "train_args": train_args,
                "backbone": args.backbone}
    for table in tables.values():
        table["settings"] = settings
    result = {**settings, "comparisons": merged_with_earlier(out_dir / "comparison.json", tables),
              "this_run": list(tables)}
    (out_dir / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "comparison.md").write_text(markdown_report(result))
    return tables


SETTINGS_KEYS = ("data", "smoke", "iterations", "train_args", "backbone")


def merged_with_earlier(report: Path, tables: dict) -> dict:
    """This run's tables, with the earlier report's other comparisons kept: rerunning one comparison
    into the same --out dropped every other table from the report. Where a row of this run failed
    (a smoke run beside a GPU run's results, a training that crashed) and the earlier table has that
    row finished, the earlier row is kept, marked so: its run is still the one in runs/ (a failed
    run never replaces a finished one there)."""
    try:
        earlier = json.loads(report.read_text())
        earlier_tables = earlier["comparisons"]
        if not isinstance(earlier_tables, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not a report: nothing to keep
        return tables
    dropped = sorted(set(earlier_tables) - set(COMPARISONS))
    if dropped:
        print(f"[experiments] the earlier report's {', '.join(dropped)} are no comparison of this runner: left out",
              flush=True)
    merged = {}
    for name in COMPARISONS:
        new, old = tables.get(name), earlier_tables.get(name)
        if isinstance(old, dict):  # a report written before tables carried their settings: the run's were theirs
            old.setdefault("settings", {key: earlier.get(key) for key in SETTINGS_KEYS})
            old.setdefault("notes", [])
        else:
            old = None
        if new is None:
            if old is not None:
                merged[name] = old
            continue
        finished = {row["row"]: row for row in (old or {}).get("rows", []) if row.get("status") == "done"}
        rows = []
        for row in new.get("rows", []):
            earlier_row = finished.get(row["row"]) if row["status"] == "failed" else None
            if earlier_row:
                row = dict(earlier_row, kept=True, kept_settings=old["settings"],
                           run=f"{earlier_row['run']} (kept from an earlier run into this folder: this rerun "
                               f"failed: {row['run']})")
            rows.append(row)
        merged[name] = dict(new, rows=rows)
    return merged


def per_group_table(title: str, notes: list, train_row, data_dir: Path, out_dir: Path, args, iters) -> dict:
    """One model per image group against one model on all groups, each scored on every group's
    valid images. train_row(row, group_split) trains (or reuses) one row's model."""
    try:
        group_split = split_by_group(data_dir, out_dir / "data" / f"groups_by_{args.group_key}", args.group_key)
    except ExperimentError as error:
        print(f"[experiments] per_group skipped: {error}", flush=True)
        return {"title": title, "rows": [], "notes": notes, "skipped": str(error)}
    for group, reason in group_split["skipped"].items():
        notes.append(f"group '{group}' left out: {reason}")
    for group, entry in group_split["groups"].items():
        if not entry["train_boxes"]:  # its own model learns only background
            notes.append(f"group '{group}': its {entry['train_images']} train image(s) mark no lesion, so its own "
                         f"model has nothing to learn from")
        if not entry["valid_boxes"]:  # its rows read n/a: say why
            notes.append(f"group '{group}': its {entry['valid_images']} valid image(s) mark no lesion, so there is "
                         f"nothing to find and its mAP50 is n/a")
    all_groups = Row("all groups", BASE, None, data="original" if args.group_key == "group" else "regrouped")
    all_record = train_row(all_groups, group_split)
    table_rows = []
    for group, entry in group_split["groups"].items():
        own = train_row(Row(f"{group}: own model", BASE, None, data=f"group:{group}"), group_split)
        table_rows.append(_table_row(f"{group}: model trained on this group only", BASE, None, own, args.smoke, iters,
                                     data=f"group:{group}", valid_images=entry["valid_images"]))
        shared = dict(all_record)
        if all_record["status"] == "done":  # the one model's scores on this group's images only
            shared["mAP50"], shared["mean_f1"] = group_scores(all_record["metrics"], group)
        table_rows.append(_table_row(f"{group}: one model on all groups", BASE, None, shared, args.smoke, iters,
                                     data=all_groups.data, valid_images=entry["valid_images"]))
    return {"title": title, "rows": table_rows, "notes": notes}


def copy_paste_data(data_dir: Path, out: Path, seed: int) -> Path:
    """The offline copy-paste set for the copy_paste comparison, made once per --out, and again when
    the source data's annotations change (a data set imported again into the same folder)."""
    from train.copy_paste import CopyPasteError, generate

    made_from = {"source": str(data_dir), "seed": seed, "source_annotations_sha256": annotations_digest(data_dir)}
    marker = out / "experiments_made_from.json"
    if (out / "copy_paste_report.json").is_file() and marker.is_file() and json.loads(marker.read_text()) == made_from:
        return out
    print(f"[experiments] writing the offline copy-paste data set into {out}", flush=True)
    marker.unlink(missing_ok=True)  # the runner's own file, not one generate() wrote: it would refuse it
    try:
        generate(data_dir, out, per_image=1, onto="all", lesions=(5, 15), seed=seed, overwrite=True)
    except CopyPasteError as error:
        raise ExperimentError(f"copy-paste data set: {error}") from None
    marker.write_text(json.dumps(made_from))
    return out


def _table_row(label, config, study, record, smoke, iters, data="original", valid_images=None) -> dict:
    row = {"row": label, "config": _relative(config), "data": data, "study_mAP50": study,
           "status": record["status"], "mAP50": record.get("mAP50"), "mean_f1": record.get("mean_f1")}
    if valid_images is not None:
        row["valid_images"] = valid_images
    if record["status"] == "done":
        row["work_dir"] = record["work_dir"]
        if smoke:
            row["run"] = f"smoke (CPU, {record['iterations']} iterations: numbers mean nothing)"
        else:
            row["run"] = (f"{record['device']}, {record['iterations']} iterations, {record['train_minutes']} min; "
                          f"start: {record['pretrained']}")
    else:
        row["run"] = f"{record['status']}: {record['error']}"
    return row


def _relative(path) -> str:
    path = Path(path)
    return str(path.relative_to(CONFIGS)) if path.is_relative_to(CONFIGS) else str(path)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown_report(result: dict) -> str:
    lines = ["# The original study's comparisons, rerun", "",
             "mAP50 (COCO, IoU 0.5) and mean F1 (at the model's score thresholds, 0.3 unless set) on the valid "
             "split; the study's mAP50 beside them for reference.", ""]
    lines += settings_lines(result)
    for name, table in result["comparisons"].items():
        lines += [f"## {table['title']} (`{name}`)", ""]
        if name not in result.get("this_run", [name]):
            lines += ["*Kept from an earlier run into this folder (not rerun this time).*", ""]
        if table["settings"] != {key: result[key] for key in SETTINGS_KEYS}:
            lines += ["These figures were made with other settings than the header's:", ""]
            lines += settings_lines(table["settings"])
        # A row kept from an earlier run (its rerun failed) is of that run's settings: a smoke banner
        # over real figures, or the reverse, would misdescribe it.
        kept = [row for row in table.get("rows", []) if row.get("kept_settings") not in (None, table["settings"])]
        if kept:
            lines += [f"The rows kept from an earlier run ({', '.join(row['row'] for row in kept)}) were made with "
                      f"other settings than this table's:", ""]
            lines += settings_lines(kept[0]["kept_settings"])
        lines += table_lines(name, table)
    return "\n".join(lines)


def settings_lines(result: dict) -> list:
    """What a table's figures were made with: the data, a smoke run, the backbone, train.train's options."""
    lines = [f"Data: `{result['data']}`.", ""]
    if result["smoke"]:
        lines += [f"**SMOKE RUN: toy-sized models with random weights, {result['iterations']} training "
                  f"iteration(s) on a CPU. These numbers mean nothing; they only show that every row builds, "
                  f"trains and evaluates.**", ""]
    if result.get("backbone"):
        # A smoke run has random weights, and --from-scratch drops the ImageNet ones: never called pretrained.
        weights = ("with random weights (not the ImageNet ones)"
                   if result["smoke"] or "--from-scratch" in result["train_args"] else "ImageNet-pretrained")
        lines += [f"**Backbone: every TOOD row uses the {result['backbone']} backbone, {weights}, in place of "
                  f"ResNeXt-101, without a COCO checkpoint** (other detectors are skipped): compare the rows "
                  f"with each other, not with the study's column.", ""]
    if result["train_args"]:
        lines += [f"train.train options: `{shlex.join(result['train_args'])}`", ""]
    return lines


def table_lines(name: str, table: dict) -> list:
    if table.get("skipped"):
        return [f"Not run: {table['skipped']}", ""]
    per_group = name == "per_group"
    header = ["row"] + (["valid images"] if per_group else []) + ["mAP50", "mean F1", "study mAP50", "run", "config"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        cells = [row["row"].replace("|", "/")] + ([str(row.get("valid_images", ""))] if per_group else []) + [
            _fmt(row["mAP50"]), _fmt(row["mean_f1"]),
            _fmt(row["study_mAP50"]) if row["study_mAP50"] is not None else "—",
            row["run"].replace("|", "/"),
            f"`{row['config']}`" + ("" if row["data"] == "original" else f" on {row['data']}")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""] + [f"- {note}" for note in table["notes"]] + [""]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data set in the project's COCO layout (train/, valid/)")
    parser.add_argument("--out", default="reports/experiments", help="tables, run work dirs and derived data sets "
                                                                      "(default reports/experiments)")
    parser.add_argument("--runs", default=",".join(COMPARISONS),
                        help=f"comma-separated comparisons (default: all): {', '.join(COMPARISONS)}")
    parser.add_argument("--smoke", action="store_true",
                        help=f"toy-sized models, 256 px, random weights, {SMOKE_ITERS} iterations: checks that "
                             "every row builds, trains and evaluates on a CPU; the numbers mean nothing")
    parser.add_argument("--iters", type=int,
                        help=f"training iterations per row (default: {SMOKE_ITERS} with --smoke, else the config's)")
    parser.add_argument("--train-args", default="",
                        help="more options for every train.train run, e.g. \"--batch-size 16 --amp --fast\" "
                             "or \"--budget-minutes 30\", or --train-args=--from-scratch (one option alone needs "
                             "the =)")
    parser.add_argument("--group-key", default="group",
                        help="image field that defines the groups of the per_group comparison (default "
                             "'group'; 'grade' for data without groups, such as ACNE04)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the copy-paste data set (default 0)")
    parser.add_argument("--backbone", choices=sorted(LITE_CONFIGS),
                        help="train the TOOD rows with this ImageNet-pretrained backbone instead of "
                             "ResNeXt-101 + COCO (offline); other detectors' rows are skipped")
    parser.add_argument("--fresh", action="store_true", help="train every row again, even when an identical run "
                                                             "is in --out")
    args = parser.parse_args(argv)
    args.runs = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = [name for name in args.runs if name not in COMPARISONS]
    if unknown or not args.runs:
        parser.error(f"--runs: unknown comparison(s) {unknown}; choose from {', '.join(COMPARISONS)}")
    if args.iters is not None and args.iters < 1:
        parser.error("--iters must be at least 1")
    if message := file_in_place_of_folder("--out", args.out):
        parser.error(message)
    out, data = Path(args.out).resolve(), Path(args.data).resolve()
    if out == data or data in out.parents:  # its runs/ and reports would go in among the photos
        parser.error(f"--out {args.out} is, or is inside, --data {args.data}: give a folder of its own")
    if (args.iters or args.smoke) and "--budget-minutes" in args.train_args:
        parser.error("--iters (or --smoke, which sets it) and --budget-minutes (in --train-args) exclude each other")
    try:
        given = shlex.split(args.train_args)
    except ValueError as error:  # e.g. an unclosed quote
        parser.error(f"--train-args {args.train_args!r}: {error}")
    for owned in ("--no-eval", "--data", "--work-dir", "--iters", "--seed"):
        if any(option == owned or option.startswith(owned + "=") for option in given):
            parser.error(f"--train-args: {owned} is set by the experiment runner itself")
    from train.train import parse_args as train_options  # what every row's train.train will be given

    try:  # refused now, not by each row's run in turn
        train_options(["CONFIG.py", "--data", args.data, "--work-dir", str(Path(args.out) / "runs"), *given])
    except SystemExit:  # argparse has printed why
        parser.error(f"--train-args {args.train_args!r}: train.train refuses them (above)")
    if not 0 <= args.seed < 2**32:  # numpy's seeds; every row failed late, or with a traceback
        parser.error(f"--seed must be from 0 to 2**32 - 1, got {args.seed}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        tables = run_experiments(args)
    except ExperimentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # each row's run is kept whole or not at all; the report is not rewritten
        print(f"interrupted: the rows that finished are kept in {args.out}/runs"
              + ("" if args.fresh else " and reused by the same command"), file=sys.stderr)
        return 130
    out = Path(args.out)
    print(f"[experiments] wrote {out / 'comparison.md'} and {out / 'comparison.json'}")
    failed = [row for table in tables.values() for row in table["rows"] if row["status"] == "failed"]
    not_run = [name for name, table in tables.items() if table.get("skipped")]
    if not_run:  # asked for, and not run: not a success
        print(f"[experiments] not run: {', '.join(not_run)} (see {out / 'comparison.md'})", file=sys.stderr)
    if failed:
        print(f"[experiments] {len(failed)} row(s) failed:", file=sys.stderr)
        for row in failed:
            print(f"  {row['row']}: {row['run']}", file=sys.stderr)
    return 1 if failed or not_run else 0


if __name__ == "__main__":
    sys.exit(main())
