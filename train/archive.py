r"""Package a training work dir as a TorchServe archive: model_store/trouble.mar.

    python -m train.archive --work-dir work_dirs/smoke --out model_store
    python -m train.archive --mar model_store/trouble.mar --input-size 800 \
        --thresholds-json reports/valid_800/thresholds.json --out model_store
    python -m train.archive --model-dir /tmp/model --out model_store

The second form re-archives a .mar with other serving settings (the weights are unchanged):
`--input-size` (the side images and slices are resized to for the model), score thresholds,
`--batch-size` (TorchServe's batchSize), `--slice-batch-size` (slices per forward pass) and
`--nms-iou` (the model's own NMS), `--sliced`/`--slice-size`, `--framing`, `--brighten-dark`, and test-time
augmentation (`--tta`, `--tta-sizes`, `--tta-thresholds-json`).
The third packs a staged model folder (model.pth, config.py, model-config.yaml), such as the
float16 weights and settings bench/gpu_session.sh brings back from a GPU.

The .mar holds everything the handler and the app's local mode need, and nothing that must be
downloaded: the resolved mmdet config (pretrained-weight downloads switched off), the weights as
a plain state dict (loadable with weights_only=True), model-config.yaml with the class names,
per-type score thresholds and SAHI settings, the `trouble` package, and the handler.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import yaml

from train import REPO, file_in_place_of_folder
from train.evaluate import EvaluationError, load_thresholds_json
from trouble.framing import FRAMINGS
from trouble.mar import extract_mar
from trouble.settings import MAX_SLICE, MIN_SLICE, ModelSettings, TestTimeAugmentation

HANDLER = REPO / "handler" / "trouble_handler.py"
MODEL_NAME = "trouble"

# TorchServe's own settings for the model (see README "Serving").
TORCHSERVE_SETTINGS = {
    "minWorkers": 1,
    "maxWorkers": 1,
    # One request per handler call: the handler runs a batch's photos one after another, so on a
    # CPU a batch only adds maxBatchDelay (bench/load_test.py: no more photos/s at 4 than at 1;
    # docs/FIGURES.md). `--mar ... --batch-size N` re-archives with another batchSize.
    "batchSize": 1,
    "maxBatchDelay": 50,       # ms to wait for a batch to fill, when batchSize > 1
    "responseTimeout": 300,    # s: a 50 MP photo sliced on 2 CPU cores takes a while
    "startupTimeout": 300,
    # s of failed worker restarts before /ping answers 500 "Unhealthy" (the app checks /ping):
    # a model that cannot load is reported instead of looking healthy while requests wait.
    "maxRetryTimeoutInSec": 60,
}


class ArchiveError(Exception):
    pass


def read_run_meta(work_dir: Path) -> dict:
    meta_path = work_dir / "run_meta.json"
    if not meta_path.is_file():
        raise ArchiveError(f"{meta_path} not found: is {work_dir} a finished training work dir? (A run writes it "
                           f"when it finishes; one that stopped early, or still runs, has none.)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # e.g. cut short in a copy
        raise ArchiveError(f"{meta_path} is not valid JSON ({error}): copy it again from the training machine") \
            from None
    if not isinstance(meta, dict) or not meta.get("checkpoint"):
        raise ArchiveError(f"{meta_path} names no checkpoint: is {work_dir} a finished training work dir?")
    return meta


def evaluation_of_this_run(work_dir: Path, meta: dict) -> dict | None:
    """The work dir's eval/metrics.json if it evaluated this run's model, else None.

    A work dir is reused by the next `make train`; with --no-eval its eval/ still describes the
    previous run, whose thresholds and figures must not travel with the new model."""
    report_path = work_dir / "eval" / "metrics.json"
    if not report_path.is_file():
        return None
    try:
        report = read_report(report_path)
    except ArchiveError as error:  # cut short in a copy, or edited: the archive is made without it
        print(f"[archive] {error.args[0].removeprefix('--report ')}: its thresholds and figures are not used",
              flush=True)
        return None
    evaluated = report.get("model", {}).get("trained") or {}
    # The checkpoint by file name: a work dir copied from a GPU server names its folder there.
    if {**evaluated, "checkpoint": Path(str(evaluated.get("checkpoint"))).name} != \
            {**meta, "checkpoint": Path(str(meta.get("checkpoint"))).name}:
        print(f"[archive] {report_path.parent} evaluated another training run: its thresholds and figures "
              f"are not used (python -m train.evaluate --work-dir {work_dir} ... --out {report_path.parent} "
              f"--overwrite)",
              flush=True)
        return None
    return report


def serving_config_text(work_dir: Path) -> str:
    """The resolved training config, with every download of pretrained weights switched off."""
    from mmengine.config import Config

    if not (work_dir / "resolved_config.py").is_file():
        raise ArchiveError(f"{work_dir / 'resolved_config.py'} not found: it is written when training starts; "
                           f"copy it with run_meta.json and the checkpoint")
    cfg = Config.fromfile(str(work_dir / "resolved_config.py"))
    cfg.load_from = None
    cfg.resume = False
    backbone = cfg.model.backbone
    backbone.init_cfg = None
    if backbone.type == "EfficientNetLite":
        backbone.pretrained = False  # the trained weights come from model.pth
    return cfg.pretty_text


def read_report(path: Path) -> dict:
    """train.evaluate's metrics.json, checked to be one (thresholds.json sits beside it)."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArchiveError(f"--report {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise ArchiveError(f"--report {path} is not a JSON file ({error})") from None
    # Each part validation_summary reads (a hand-edited or truncated report was a KeyError traceback).
    parts = {"model": dict, "data": dict, "coco": dict, "at_thresholds": dict, "at_f1_optimal_thresholds": dict}
    if not isinstance(report, dict) or not all(isinstance(report.get(key), kind) for key, kind in parts.items()) \
            or not {"gt", "images"} <= set(report["data"]):
        raise ArchiveError(f"--report {path} is not an evaluation's metrics.json (train.evaluate writes one)")
    return report


def thresholds_match(thresholds: dict, served: dict, tolerance: float) -> bool:
    """Whether `thresholds` has every served type's threshold, within `tolerance`."""
    return all(abs(thresholds.get(name, -1.0) - value) < tolerance for name, value in served.items())


def validation_summary(report: dict, section: dict) -> dict:
    """What the app shows of an evaluation report (train.evaluate's metrics.json): mAP50, and the
    count error and grade accuracy at the score thresholds this archive serves (None where the
    report was scored at others)."""
    # The types first: where both differ, the plainer of the two reasons.
    evaluated = report["model"].get("classes") or report["data"].get("types")
    if evaluated is not None and list(evaluated) != list(section["classes"]):  # another model's evaluation
        raise ArchiveError(f"the report evaluated a model of the types {list(evaluated)}, the archive's are "
                           f"{list(section['classes'])}: evaluate this model (train.evaluate --model)")
    made_of, holds = report["model"].get("weights_sha256"), section.get("weights_sha256")
    if made_of and holds and made_of != holds:  # another model's figures, shown as this one's
        raise ArchiveError(f"the report evaluated other weights (SHA-256 {made_of}...) than the archive's ({holds}...): "
                           f"evaluate this model (train.evaluate --model)")
    for key in ("input_size", "nms_iou", "framing", "brighten_dark"):
        if section.get(key) is not None and report["model"].get(key) not in (None, section[key]):
            raise ArchiveError(f"the report was made with {key} {report['model'][key]}, the archive serves "
                               f"{section[key]}: evaluate it with the archive's settings")
    tta = section.get("tta") or {}
    if bool(report["model"].get("tta")) != bool(tta.get("enabled")):
        made, serves = ("with", "without") if report["model"].get("tta") else ("without", "with")
        raise ArchiveError(f"the report was made {made} test-time augmentation, the archive serves {serves}: "
                           f"evaluate it with the archive's settings (train.evaluate --tta)")
    served = section["score_thresholds"]
    if tta.get("enabled"):
        served = {**served, **(tta.get("score_thresholds") or {})}
    block = next((b for b in (report["at_thresholds"], report["at_f1_optimal_thresholds"])
                  if thresholds_match(b["thresholds"], served, 1e-3)), None)
    grade = (block or {}).get("grade") or {}
    # Served thresholds that are the report's F1-optimal ones were chosen on these photos: the
    # figures flatter the model a little, and the app says so.
    optimal = report.get("f1_optimal_thresholds") or {}
    chosen_here = bool(optimal) and thresholds_match(optimal, served, 0.01)
    return {"data": report["data"]["gt"], "images": report["data"]["images"], "tta": bool(tta.get("enabled")),
            "thresholds_chosen_on_these_photos": chosen_here,
            # A bool; reports made before it was resolved hold the command line's "true"/"false".
            "sliced": {"true": True, "false": False}.get(report["model"].get("sliced"), report["model"].get("sliced")),
            "mAP50": round(report["coco"]["mAP50"], 3),
            "count_mae": round(block["count"]["mae"], 2) if block and block["count"]["mae"] is not None else None,
            "grade_accuracy": round(grade["accuracy"], 3) if grade.get("accuracy") is not None else None,
            "by_found_grade": by_found_grade(block, grade)}


def by_found_grade(block, grade) -> list | None:
    """Per grade of the count found (0..3), for the app's typical range: the validation photos whose
    count fell in that grade, the marked count's offsets from it (10th and 90th percentiles) and the
    labels' grades of those photos; None where no photo's count fell in it, or the report predates it."""
    rows = (block or {}).get("count", {}).get("by_found_grade")
    if not rows:
        return None
    confusion = grade.get("confusion")  # rows: label, columns: grade of the count found
    return [{"images": row["images"], "mae": round(row["mae"], 2),
             "marked_minus_found": [round(row["marked_minus_found_p10"]), round(row["marked_minus_found_p90"])],
             "labels": [line[found] for line in confusion] if confusion else None} if row else None
            for found, row in enumerate(rows)]


def write_weights(checkpoint: Path, out: Path, half: bool = False):
    """A training checkpoint's weights alone ({'state_dict': tensors}), in float16 with `half`."""
    import torch

    # Our own training output (trusted): mmengine checkpoints carry python objects besides tensors.
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as error:  # empty, truncated or not a checkpoint
        raise ArchiveError(f"{checkpoint} cannot be read as a checkpoint ({type(error).__name__}: {error}): "
                           f"it may be cut short; copy it again") from None
    state = state.get("state_dict", state)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"state_dict": state}, out)


def stage_model_dir(work_dir: Path, out_dir: Path, with_evaluation: bool = True, half: bool = False) -> Path:
    """Write config.py, model.pth and model-config.yaml for the work dir's best checkpoint into out_dir.

    with_evaluation: carry the thresholds and figures of the evaluation `make train` ran on this
    checkpoint, if any; False (train.evaluate staging a model to evaluate it anew) carries none."""
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    meta = read_run_meta(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(meta["checkpoint"])
    if not checkpoint.is_file() and (work_dir / checkpoint.name).is_file():
        checkpoint = work_dir / checkpoint.name  # a work dir copied from another machine (e.g. a GPU server)
    if not checkpoint.is_file():
        raise ArchiveError(f"checkpoint {checkpoint} not found (nor {checkpoint.name} in {work_dir})")
    write_weights(checkpoint, out_dir / "model.pth", half=half)
    (out_dir / "config.py").write_text(serving_config_text(work_dir))

    report = evaluation_of_this_run(work_dir, meta) if with_evaluation else None
    thresholds_path = work_dir / "eval" / "thresholds.json"
    thresholds = json.loads(thresholds_path.read_text()) if report and thresholds_path.is_file() else {}
    classes = meta["classes"]
    # Every serving setting written out with its default, so that it can be read and changed in
    # the archive (README: Serving). Thresholds chosen on the validation split (best F1 per type);
    # 0.3 where none was chosen.
    serving = ModelSettings(classes=classes, score_thresholds={name: float(thresholds.get(name, 0.3))
                                                                for name in classes},
                            model_name=MODEL_NAME, pretrained=meta["pretrained"])
    section = serving.to_dict()
    del section["validation"]  # added below when there is an evaluation
    section["trained"] = {k: meta.get(k) for k in ("config", "iterations", "batch_size", "train_minutes", "device")}
    if report:  # the evaluation `make train` ran just before
        section["validation"] = validation_summary(report, section)
    settings = {**TORCHSERVE_SETTINGS, "trouble": section}
    with open(out_dir / "model-config.yaml", "w") as f:
        yaml.safe_dump(settings, f, sort_keys=False)
    return out_dir


STAGED_FILES = ("model.pth", "config.py", "model-config.yaml")  # what build_mar packs besides the code


def stamped_config(model_dir: Path, out: Path, version: str | None) -> str:
    """Write model_dir's model-config.yaml to `out` with what tells this archive apart from another
    of the same version (answers carry both): when it was made, and its weights' hash. version: the
    model's version, or None to keep the one it has (1.0 for a new model). → the version written."""
    settings = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    section = settings["trouble"]
    if version is not None:
        section["model_version"] = version
    version = str(section.get("model_version", "1.0"))
    check_version(version)  # also one written by hand in a staged folder's model-config.yaml
    section["archived"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with open(model_dir / "model.pth", "rb") as weights:  # in chunks: an X-101 checkpoint is 350 MB
        section["weights_sha256"] = hashlib.file_digest(weights, "sha256").hexdigest()[:16]
    out.write_text(yaml.safe_dump(settings, sort_keys=False))
    return version


def check_version(version: str):
    """TorchServe puts the version in URLs (/models/trouble/<version>): letters, digits, '.', '_', '-'."""
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}", version):
        raise ArchiveError(f"the model's version (--version, or model_version in model-config.yaml) must be up to "
                           f"32 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. 2.1 or "
                           f"2026-11-27), got {version!r}")


def build_mar(model_dir: Path, export_dir: Path, version: str | None = None) -> Path:
    """torch-model-archiver over a staged model dir plus the `trouble` package and the handler.
    version: the model's version (answers carry it), or None for the one model-config.yaml has.

    The new archive replaces export_dir/trouble.mar only once it is complete: `--mar
    model_store/trouble.mar --out model_store` rewrites its own input, which an interrupted run
    would otherwise leave broken (the only copy, for a model brought back from a GPU)."""
    if message := file_in_place_of_folder("--out", export_dir, "the folder for trouble.mar (e.g. model_store)"):
        raise ArchiveError(message)
    export_dir.mkdir(parents=True, exist_ok=True)
    mar = export_dir / f"{MODEL_NAME}.mar"
    with tempfile.TemporaryDirectory(prefix="trouble-archive-") as tmp:
        extra, built, archiver_tmp = Path(tmp) / "extra", Path(tmp) / "built", Path(tmp) / "archiver"
        shutil.copytree(REPO / "trouble", extra / "trouble", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy2(model_dir / "config.py", extra / "config.py")
        config_yaml = Path(tmp) / "model-config.yaml"
        version = stamped_config(model_dir, config_yaml, version)
        built.mkdir()
        archiver_tmp.mkdir()
        command = [
            sys.executable, "-m", "model_archiver.model_packaging",
            "--model-name", MODEL_NAME, "--version", version,
            "--serialized-file", str(model_dir / "model.pth"),
            "--handler", str(HANDLER),
            "--extra-files", str(extra),  # a folder's contents land at the archive's root
            "--config-file", str(config_yaml),
            "--export-path", str(built), "--force",
        ]
        # The archiver stages in $TMPDIR/<model name>, deleting it first: two archive runs at once
        # (two trainings, or one beside the tests) would pack each other's files. Each gets its own.
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(archiver_tmp)})
        if result.returncode != 0:
            raise ArchiveError(f"torch-model-archiver failed:\n{result.stdout}\n{result.stderr}")
        partial = export_dir / f".{MODEL_NAME}.mar.partial-{os.getpid()}"
        try:
            shutil.copyfile(built / mar.name, partial)  # beside the target: the rename below is atomic
            os.replace(partial, mar)
        finally:
            partial.unlink(missing_ok=True)
    print(f"[archive] wrote {mar} ({mar.stat().st_size / 1e6:.1f} MB)", flush=True)
    return mar


def archive_work_dir(work_dir: Path, export_dir: Path, half: bool = False, version: str | None = None) -> Path:
    with tempfile.TemporaryDirectory(prefix="trouble-stage-") as tmp:
        model_dir = stage_model_dir(Path(work_dir), Path(tmp), half=half)
        return build_mar(model_dir, Path(export_dir), version)


def archive_model_dir(model_dir: Path, export_dir: Path, version: str | None = None) -> Path:
    missing = [name for name in STAGED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ArchiveError(f"{model_dir} lacks {', '.join(missing)}: a staged model folder holds "
                           f"{', '.join(STAGED_FILES)}")
    try:  # edited by hand, perhaps: checked as serving will read it, not found out when TorchServe loads it
        ModelSettings.from_yaml(model_dir / "model-config.yaml").validate()
    except ValueError as error:
        raise ArchiveError(str(error)) from None
    return build_mar(model_dir, export_dir, version)


def settings_of_the_figures(section: dict) -> dict:
    """The serving settings a validation summary's figures depend on and the app cannot see
    changed. (Slicing and test-time augmentation on or off are recorded in the summary itself,
    and the app says when an answer differs from them.)"""
    validation, tta = section.get("validation") or {}, section.get("tta") or {}
    return {"input size": section.get("input_size"), "NMS IoU": section.get("nms_iou"),
            "framing": section.get("framing"), "score thresholds": dict(section["score_thresholds"]),
            # Changes only dark photos' answers; an archive without the setting brightens them.
            "brightening of dark photos": section.get("brighten_dark", True),
            "slice size": section["slicing"].get("slice_size") if validation.get("sliced") else None,
            "test-time augmentation sizes": list(tta.get("sizes") or []) if validation.get("tta") else None,
            "test-time augmentation thresholds": dict(tta.get("score_thresholds") or {})
            if validation.get("tta") else None}


def rearchive_mar(mar: Path, export_dir: Path, input_size: int | None = None,
                  thresholds: dict | None = None, batch_size: int | None = None,
                  slice_batch_size: int | None = None, nms_iou: float | None = None,
                  report: dict | None = None, sliced: bool | None = None, slice_size: int | None = None,
                  framing: str | None = None, brighten_dark: bool | None = None, tta: bool | None = None,
                  tta_sizes: list | None = None,
                  tta_thresholds: dict | None = None, max_model_passes: int | None = None,
                  max_seconds_per_photo: int | None = None, version: str | None = None) -> Path:
    """Unpack a .mar, change its serving settings in model-config.yaml, and archive it again.

    batch_size is TorchServe's batchSize: how many requests one handler call receives;
    slice_batch_size is how many SAHI slices of one photo go through the model at once; sliced and
    slice_size are the slicing a request gets when it does not ask for its own, framing its face
    framing (trouble/framing.py), brighten_dark whether a dark photo is brightened for the model
    (trouble/photo_checks.py); tta, tta_sizes and tta_thresholds its test-time augmentation
    (trouble.settings.TestTimeAugmentation); max_model_passes and max_seconds_per_photo the most
    model passes and seconds one photo may take (trouble.settings.ModelSettings); report is an evaluation's metrics.json of these
    settings, summarised in the archive for the app. Every setting is checked as serving reads it."""
    if not Path(mar).is_file():
        raise ArchiveError(f"{mar} not found")
    if batch_size is not None and not 1 <= batch_size <= 64:  # TorchServe's; the others are checked below
        raise ArchiveError(f"batch size must be between 1 and 64, got {batch_size}")
    with tempfile.TemporaryDirectory(prefix="trouble-rearchive-") as tmp:
        model_dir = Path(tmp)
        try:
            extract_mar(mar, model_dir)
        except ValueError as error:  # not a zip file, one cut off, a member's CRC or compression
            raise ArchiveError(str(error)) from None
        config_yaml = model_dir / "model-config.yaml"
        try:  # its shape, before anything is changed; the values are checked once changed (a bad
            ModelSettings.from_yaml(config_yaml)  # threshold may be what --thresholds-json mends)
        except (OSError, ValueError) as error:
            raise ArchiveError(f"{mar} cannot be archived again: "
                               f"{str(error).replace(str(config_yaml), 'its model-config.yaml')}") from None
        settings = yaml.safe_load(config_yaml.read_text())
        section = settings["trouble"]
        measured_at = settings_of_the_figures(section)
        if batch_size is not None:
            settings["batchSize"] = batch_size
        if input_size is not None:
            section["input_size"] = input_size
        if slice_batch_size is not None:
            section["slicing"]["batch_size"] = slice_batch_size
        if sliced is not None:
            section["slicing"]["enabled"] = sliced
        if slice_size is not None:
            section["slicing"]["slice_size"] = slice_size
        if framing is not None:
            section["framing"] = framing
        if brighten_dark is not None:
            section["brighten_dark"] = brighten_dark
        if nms_iou is not None:
            section["nms_iou"] = nms_iou
        if max_model_passes is not None:
            section["max_model_passes"] = max_model_passes
        if max_seconds_per_photo is not None:
            section["max_seconds_per_photo"] = max_seconds_per_photo
        section["tta"] = {**asdict(TestTimeAugmentation()), **(section.get("tta") or {})}  # older archives lack it
        if tta is not None:
            section["tta"]["enabled"] = tta
        if tta_sizes is not None:
            section["tta"]["sizes"] = list(tta_sizes)
        given_thresholds = [(given, owner) for given, owner in ((thresholds, section), (tta_thresholds, section["tta"]))
                            if given is not None]
        for given, owner in given_thresholds:
            owner["score_thresholds"] = {**owner["score_thresholds"], **given}
        config_yaml.write_text(yaml.safe_dump(settings, sort_keys=False))
        try:  # the changed settings checked as serving will read them: one set of checks
            ModelSettings.from_yaml(config_yaml).validate()
        except ValueError as error:
            raise ArchiveError(f"{mar} with these settings: "
                               f"{str(error).replace(str(config_yaml), 'its model-config.yaml')}") from None
        for given, owner in given_thresholds:  # rounded once checked to be numbers: float noise only. Not to
            # the answer's 4 decimals: an F1-optimal 0.23185 keeps scores from 0.2319, as evaluation did.
            owner["score_thresholds"].update({name: round(float(value), 6) for name, value in given.items()})
        if report is not None:
            section["validation"] = validation_summary(report, section)
        elif section.get("validation"):
            changed = [name for name, value in settings_of_the_figures(section).items() if value != measured_at[name]]
            if changed:  # figures of other settings would be shown as this archive's own
                del section["validation"]
                print(f"[archive] the validation figures were left out: they were measured with another "
                      f"{' and '.join(changed)}. Evaluate at the new settings and pass --report to carry them.",
                      flush=True)
        config_yaml.write_text(yaml.safe_dump(settings, sort_keys=False))
        return build_mar(model_dir, export_dir, version)


# The serving settings `--mar` changes (argparse dests).
MAR_ONLY_OPTIONS = ("input_size", "thresholds_json", "batch_size", "slice_batch_size", "sliced", "slice_size",
                    "framing", "brighten_dark", "nms_iou", "tta", "tta_sizes", "tta_thresholds_json", "max_model_passes",
                    "max_seconds_per_photo", "report")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--work-dir", help="a finished training work dir (or one copied from another machine, "
                                           "its checkpoint beside run_meta.json, e.g. what bench/gpu_session.sh "
                                           "brings back)")
    source.add_argument("--mar", help="an existing .mar to archive again with other serving settings")
    source.add_argument("--model-dir", help="a staged model folder (model.pth, config.py, model-config.yaml), "
                                            "e.g. one unpacked from a .mar and edited")
    parser.add_argument("--out", default="model_store", help="folder for trouble.mar (default model_store: with "
                                                              "--mar model_store/trouble.mar, it is rewritten in place)")
    parser.add_argument("--version", help="the model's version, which every answer carries (default: the .mar's "
                                          "or the staged folder's own, else 1.0); each archive also records when "
                                          "it was made and its weights' hash")
    parser.add_argument("--half", action="store_true", help="with --work-dir: store the weights as float16 (half "
                                                            "the size)")
    parser.add_argument("--input-size", type=int, help="with --mar: the side images are resized to for the model")
    parser.add_argument("--thresholds-json", help="with --mar: {type: threshold} as JSON text (e.g. "
                                                  "'{\"acne\": 0.23}') or a file, or an evaluation's thresholds.json "
                                                  "or metrics.json")
    parser.add_argument("--batch-size", type=int, help="with --mar: TorchServe's batchSize (requests per handler "
                                                       "call; 1 suits a CPU)")
    parser.add_argument("--slice-batch-size", type=int, help="with --mar: SAHI slices per forward pass (1 suits a "
                                                             "CPU, 4-16 a GPU)")
    parser.add_argument("--sliced", choices=["true", "false"], help="with --mar: whether photos larger than a slice "
                                                                    "are sliced when a request does not say")
    parser.add_argument("--slice-size", type=int, help="with --mar: the default slice size in pixels")
    parser.add_argument("--framing", choices=FRAMINGS, help="with --mar: 'face' crops a photo to the face when the "
                                                            "face is small in it (trouble/framing.py)")
    parser.add_argument("--brighten-dark", choices=["true", "false"], help="with --mar: whether a dark photo is "
                                                                           "brightened for the model (default: "
                                                                           "true; trouble/photo_checks.py)")
    parser.add_argument("--nms-iou", type=float, help="with --mar: IoU above which the model's NMS keeps only the "
                                                      "higher-scoring box (default: the config's)")
    parser.add_argument("--tta", choices=["true", "false"], help="with --mar: test-time augmentation (several "
                                                                 "passes over each photo, fused) when a request "
                                                                 "does not say")
    parser.add_argument("--tta-sizes", help="with --mar: comma-separated input sizes of those passes, e.g. 640,720")
    parser.add_argument("--tta-thresholds-json", help="with --mar: the score thresholds of those passes' fused "
                                                      "scores, as --thresholds-json")
    parser.add_argument("--max-model-passes", type=int, help="with --mar: the most model passes one photo may take "
                                                             "(slices x test-time augmentation passes; 200 suits "
                                                             "2 CPU cores, raise it on a GPU)")
    parser.add_argument("--max-seconds-per-photo", type=int, help="with --mar: the most seconds one photo's model "
                                                                  "passes may take (240 suits TorchServe's 300 s "
                                                                  "responseTimeout; raise both together)")
    parser.add_argument("--report", help="with --mar: train.evaluate's metrics.json of the served settings; its "
                                         "mAP50, count error and grade accuracy travel with the model to the app")
    args = parser.parse_args(argv)
    # Refused rather than ignored: an archive built without a setting its user asked for.
    if args.half and not args.work_dir:  # a .mar or a staged folder keeps the weights it holds
        parser.error("--half works with --work-dir only")
    mar_only = [f"--{name.replace('_', '-')}" for name in MAR_ONLY_OPTIONS if getattr(args, name) is not None]
    if mar_only and not args.mar:
        parser.error(f"{', '.join(mar_only)}: only with --mar (archive first, then archive that .mar again "
                     f"with {'it' if len(mar_only) == 1 else 'them'})")
    try:
        if args.version is not None:
            check_version(args.version)
        if args.model_dir:
            archive_model_dir(Path(args.model_dir), Path(args.out), args.version)
        elif args.mar:
            thresholds = load_thresholds_json(args.thresholds_json) if args.thresholds_json else None
            report = read_report(Path(args.report)) if args.report else None
            tta_thresholds = load_thresholds_json(args.tta_thresholds_json) if args.tta_thresholds_json else None
            try:
                tta_sizes = [int(size) for size in args.tta_sizes.split(",")] if args.tta_sizes else None
            except ValueError:
                raise ArchiveError(f"--tta-sizes must be comma-separated integers, got {args.tta_sizes!r}") from None
            if tta_sizes and not all(MIN_SLICE <= size <= MAX_SLICE for size in tta_sizes):  # not "input_size ..."
                raise ArchiveError(f"--tta-sizes must each be between {MIN_SLICE} and {MAX_SLICE} px, got "
                                   f"{args.tta_sizes!r}")
            rearchive_mar(Path(args.mar), Path(args.out), args.input_size, thresholds, args.batch_size,
                          args.slice_batch_size, args.nms_iou, report,
                          sliced=None if args.sliced is None else args.sliced == "true", slice_size=args.slice_size,
                          framing=args.framing,
                          brighten_dark=None if args.brighten_dark is None else args.brighten_dark == "true",
                          tta=None if args.tta is None else args.tta == "true",
                          tta_sizes=tta_sizes, tta_thresholds=tta_thresholds, max_model_passes=args.max_model_passes,
                          max_seconds_per_photo=args.max_seconds_per_photo, version=args.version)
        else:
            archive_work_dir(Path(args.work_dir), Path(args.out), half=args.half, version=args.version)
    except (ArchiveError, EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # build_mar replaces trouble.mar only once the new one is whole
        print(f"interrupted: {Path(args.out) / 'trouble.mar'} is as it was", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
