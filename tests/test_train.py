"""`python -m train.train` end to end on CPU, the starting-weights paths, resume, time budget,
and the project's own mmdet parts (EfficientNet-Lite backbone, float32 focal losses)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config

from tests.conftest import REPO, ended_by_ctrl_c, read_json, run_module

SMOKE = "train/configs/tood_smoke.py"


def test_smoke_training_leaves_mar_metrics_table_and_plot(smoke_training):
    work = smoke_training["work_dir"]
    meta = read_json(work / "run_meta.json")
    assert meta["classes"] == ["comedone", "papule", "pustule"]  # class count and names from the data
    assert meta["pretrained"] == "none (trained from scratch)"
    assert meta["iterations"] == 60
    for name in ("metrics.json", "metrics.md", "curves.png", "thresholds.json"):
        assert (work / "eval" / name).stat().st_size > 0, name
    metrics = read_json(work / "eval" / "metrics.json")
    assert metrics["model"]["pretrained"] == "none (trained from scratch)"
    assert 0.0 <= metrics["coco"]["mAP50"] <= 1.0
    table = (work / "eval" / "metrics.md").read_text()
    assert "| mAP50 | mean F1 | F1 comedone | F1 papule | F1 pustule |" in table
    assert "none (trained from scratch)" in table  # every report says how the model started

    with zipfile.ZipFile(smoke_training["mar"]) as mar:
        names = set(mar.namelist())
        settings = yaml.safe_load(mar.read("model-config.yaml"))
    assert {"trouble_handler.py", "model.pth", "config.py", "model-config.yaml", "trouble/inference.py",
            "MAR-INF/MANIFEST.json"} <= names
    assert not any("__pycache__" in name for name in names)
    assert settings["trouble"]["classes"] == meta["classes"]
    # The F1-optimal thresholds chosen on the valid split travel with the model.
    assert settings["trouble"]["score_thresholds"] == pytest.approx(read_json(work / "eval" / "thresholds.json"))
    assert settings["batchSize"] >= 1 and settings["maxBatchDelay"] > 0
    # The evaluation it just ran travels with it, at the thresholds it serves (the F1-optimal ones).
    validation = settings["trouble"]["validation"]
    assert validation["mAP50"] == round(metrics["coco"]["mAP50"], 3) and validation["images"] == 4
    assert validation["count_mae"] == round(metrics["at_f1_optimal_thresholds"]["count"]["mae"], 2)
    assert validation["thresholds_chosen_on_these_photos"] is True  # the app then says the figures flatter it
    # The count error by the grade of the count found, and the labels of those photos, for the app's range.
    block, by_grade = metrics["at_f1_optimal_thresholds"], validation["by_found_grade"]
    assert len(by_grade) == 4 and sum(row["images"] for row in by_grade if row) == 4
    for found, row in enumerate(by_grade):
        if row:
            assert row["labels"] == [line[found] for line in block["grade"]["confusion"]]
            assert row["marked_minus_found"] == [
                round(block["count"]["by_found_grade"][found][f"marked_minus_found_p{q}"]) for q in (10, 90)]


def test_saved_predictions_rescore_to_the_same_metrics(smoke_training, tmp_path):
    """The evaluation keeps the model's predictions, so other thresholds cost no second model run."""
    work = smoke_training["work_dir"]
    predictions = read_json(work / "eval" / "predictions.json")
    assert predictions and {"image_id", "category_id", "bbox", "score"} <= set(predictions[0])
    first = read_json(work / "eval" / "metrics.json")
    thresholds = tmp_path / "thresholds.json"  # the ones the first report was scored at
    per_type = first["at_thresholds"]["per_type"]
    thresholds.write_text(json.dumps({name: row["threshold"] for name, row in per_type.items()}))
    run_module(["train.evaluate", "--predictions", str(work / "eval" / "predictions.json"), "--thresholds-json",
                str(thresholds), "--gt", str(smoke_training["data"] / "valid" / "annotations.json"),
                "--out", str(tmp_path / "again")])
    again = read_json(tmp_path / "again" / "metrics.json")
    assert again["coco"]["mAP50"] == pytest.approx(first["coco"]["mAP50"])
    assert again["at_thresholds"] == first["at_thresholds"]
    # Without thresholds: those of the report beside the predictions, not 0.3 (other figures than the run's).
    plain = run_module(["train.evaluate", "--predictions", str(work / "eval" / "predictions.json"),
                        "--gt", str(smoke_training["data"] / "valid" / "annotations.json"), "--out", str(tmp_path / "plain")])
    assert "scored at the thresholds of the report beside the predictions" in plain.stdout
    assert read_json(tmp_path / "plain" / "metrics.json")["at_thresholds"] == first["at_thresholds"]
    assert read_json(tmp_path / "plain" / "thresholds.json") == first["f1_optimal_thresholds"]
    # Scored into the predictions' own folder, the model run's report would be replaced: refused.
    into_run = run_module(["train.evaluate", "--predictions", str(work / "eval" / "predictions.json"), "--gt",
                           str(smoke_training["data"] / "valid" / "annotations.json"), "--score-threshold", "0.5",
                           "--out", str(work / "eval")], check=False)
    assert into_run.returncode == 2 and "is the folder of --predictions" in into_run.stderr
    assert read_json(work / "eval" / "metrics.json") == first


def test_evaluating_a_model_at_a_given_threshold(smoke_training, tmp_path):
    """--score-threshold with --model scores at that threshold, not at the model's own; --framing is
    recorded (the smoke model's own is "none"; that it reaches the model through
    trouble.batch.predict_each, which evaluation shares with the batch CLI, is checked in test_serving)."""
    run_module(["train.evaluate", "--model", str(smoke_training["mar"]), "--limit", "2", "--score-threshold", "0.9",
                "--framing", "face", "--gt", str(smoke_training["data"] / "valid" / "annotations.json"),
                "--out", str(tmp_path)])
    metrics = read_json(tmp_path / "metrics.json")
    assert {row["threshold"] for row in metrics["at_thresholds"]["per_type"].values()} == {0.9}
    assert metrics["model"]["framing"] == "face"
    assert "chosen_on_these_photos" not in metrics["at_thresholds"]  # a threshold given, not the model's


def test_a_models_own_thresholds_chosen_on_these_photos_are_called_optimistic(smoke_training, tmp_path):
    """The archive serves the F1-optimal thresholds of its evaluation on the valid split: the model
    evaluated again there at them flatters itself, as the F1-optimal section of any report does."""
    gt = smoke_training["data"] / "valid" / "annotations.json"
    run_module(["train.evaluate", "--model", str(smoke_training["mar"]), "--limit", "2", "--gt", str(gt),
                "--out", str(tmp_path / "same")])
    assert read_json(tmp_path / "same" / "metrics.json")["at_thresholds"]["chosen_on_these_photos"] is True
    assert "Optimistic: these are the model's own thresholds, chosen on these images" in \
        (tmp_path / "same" / "metrics.md").read_text()
    # The same photos under another path are the same file only if they are: a copy is other photos to it.
    shutil.copytree(gt.parent, tmp_path / "copy")
    run_module(["train.evaluate", "--model", str(smoke_training["mar"]), "--limit", "2",
                "--gt", str(tmp_path / "copy" / "annotations.json"), "--out", str(tmp_path / "other")])
    assert "chosen_on_these_photos" not in read_json(tmp_path / "other" / "metrics.json")["at_thresholds"]


def test_saved_predictions_of_a_limited_run_rescore_with_the_same_limit(smoke_training, tmp_path):
    """--limit N with --predictions scores the N images a --limit N run of the model scored."""
    gt = str(smoke_training["data"] / "valid" / "annotations.json")
    run_module(["train.evaluate", "--model", str(smoke_training["mar"]), "--limit", "2", "--score-threshold", "0.2",
                "--gt", gt, "--out", str(tmp_path / "model")])
    for predictions, out in ((tmp_path / "model" / "predictions.json", "again"),
                             (smoke_training["work_dir"] / "eval" / "predictions.json", "subset_of_all")):
        run_module(["train.evaluate", "--predictions", str(predictions), "--limit", "2", "--score-threshold", "0.2",
                    "--gt", gt, "--out", str(tmp_path / out)])
        first, again = read_json(tmp_path / "model" / "metrics.json"), read_json(tmp_path / out / "metrics.json")
        assert again["data"]["images"] == first["data"]["images"] == 2
        assert again["coco"]["mAP50"] == pytest.approx(first["coco"]["mAP50"])
        assert again["at_thresholds"] == first["at_thresholds"]


def test_an_unreadable_photo_is_left_out_of_the_evaluation_and_named(smoke_training, tmp_path):
    valid = tmp_path / "valid"
    shutil.copytree(smoke_training["data"] / "valid", valid)
    gt = read_json(valid / "annotations.json")
    broken = gt["images"][0]
    (valid / broken["file_name"]).write_bytes(b"\xff\xd8 cut off")
    result = run_module(["train.evaluate", "--model", str(smoke_training["mar"]), "--gt", str(valid / "annotations.json"),
                         "--out", str(tmp_path / "out")])
    metrics = read_json(tmp_path / "out" / "metrics.json")
    assert metrics["data"]["images"] == len(gt["images"]) - 1
    assert metrics["data"]["gt_boxes"] == sum(a["image_id"] != broken["id"] for a in gt["annotations"])
    assert [line.split(":")[0] for line in metrics["data"]["unreadable_images"]] == [broken["file_name"]]
    assert any("could not be read and are left out" in note and broken["file_name"] in note
               for note in metrics["notes"])
    assert "could not be read" in result.stdout
    # Scored again from its predictions.json, the photo stays out (its lesions had counted as missed).
    run_module(["train.evaluate", "--predictions", str(tmp_path / "out" / "predictions.json"),
                "--gt", str(valid / "annotations.json"), "--out", str(tmp_path / "again")])
    again = read_json(tmp_path / "again" / "metrics.json")
    assert again["data"]["images"] == metrics["data"]["images"] and again["data"]["gt_boxes"] == metrics["data"]["gt_boxes"]
    assert again["coco"]["mAP50"] == pytest.approx(metrics["coco"]["mAP50"])
    assert again["at_thresholds"] == metrics["at_thresholds"]
    assert any("could not read are left out" in note for note in again["notes"])


def test_evaluation_inputs_that_cannot_work_are_named(smoke_training, tmp_path):
    # From an audit: a thresholds.json given back to the folder its run wrote had been replaced by the new one.
    rerun = tmp_path / "rerun"
    shutil.copytree(smoke_training["work_dir"] / "eval", rerun)
    kept = (rerun / "thresholds.json").read_bytes()
    gt = str(smoke_training["data"] / "valid" / "annotations.json")
    result = run_module(["train.evaluate", "--gt", gt, "--predictions", str(smoke_training["work_dir"] / "eval" /
                                                                            "predictions.json"),
                         "--thresholds-json", str(rerun / "thresholds.json"), "--out", str(rerun)], check=False)
    assert result.returncode == 2 and f"is a file --out {rerun} would write" in result.stderr, result.stderr[-1500:]
    assert (rerun / "thresholds.json").read_bytes() == kept
    zipfile.ZipFile(tmp_path / "empty.mar", "w").close()
    for args, message in ((["--thresholds-json", "[0.3]"], "expected {type name: threshold}"),  # was "no such file"
                          (["--thresholds-json", "0.3"], "expected {type name: threshold}"),
                          (["--model", str(tmp_path / "empty.mar")], "holds no model-config.yaml")):
        model = [] if "--model" in args else ["--model", str(smoke_training["mar"])]
        result = run_module(["train.evaluate", "--gt", gt, *model, *args, "--out", str(tmp_path / "o")], check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    not_coco = tmp_path / "list.json"
    not_coco.write_text("[1]")
    for args, message in ((["--model", str(smoke_training["mar"]), "--gt", str(not_coco), "--out", str(tmp_path / "o")],
                           "expected a COCO object"),
                          (["--predictions", str(not_coco), "--gt", str(not_coco), "--out", str(REPO / "README.md")],
                           "is a file: give a folder")):
        result = run_module(["train.evaluate", *args], check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr


def test_a_reused_work_dir_archives_this_runs_model_and_not_the_last_runs_figures(smoke_training, synthetic_data,
                                                                                 tmp_path):
    """`make train` reuses work_dirs/<config> (with --overwrite, or it is refused): the earlier run's better
    checkpoint and its evaluation (thresholds, validation figures) must not be taken for this run's."""
    work = tmp_path / "w"
    shutil.copytree(smoke_training["work_dir"], work)
    earlier = work / Path(read_json(work / "run_meta.json")["checkpoint"]).name
    assert earlier.is_file() and "best" in earlier.name
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(work), "--iters", "2",
                         "--val-interval", "2", "--no-eval", "--model-store", str(tmp_path / "store"), "--overwrite"])
    checkpoint = read_json(work / "run_meta.json")["checkpoint"]
    # The 2-iteration model finds nothing, so this run saves no best checkpoint; the earlier run's best
    # went with --overwrite, and is not taken.
    assert not list(work.glob("best_*.pth")) and not earlier.exists()
    assert checkpoint == str(work / "iter_2.pth")
    assert "evaluated another training run" in result.stdout
    with zipfile.ZipFile(tmp_path / "store" / "trouble.mar") as mar:
        settings = yaml.safe_load(mar.read("model-config.yaml"))["trouble"]
    assert "validation" not in settings and set(settings["score_thresholds"].values()) == {0.3}


def test_data_the_training_cannot_use_is_refused_before_it_starts(synthetic_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    valid = read_json(data / "valid" / "annotations.json")
    valid["categories"] = valid["categories"][:2]  # a stale valid split from an import with other types
    valid["annotations"] = [a for a in valid["annotations"] if a["category_id"] <= 2]
    (data / "valid" / "annotations.json").write_text(json.dumps(valid))
    (tmp_path / "a_file").write_text("")
    for args, message in ((["--data", str(data)], "the valid split's categories"),
                          (["--data", str(synthetic_data), "--model-store", str(tmp_path / "a_file")],
                           "--model-store")):
        result = run_module(["train.train", SMOKE, "--work-dir", str(tmp_path / "w"), *args], check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "w").exists()
    (data / "train" / "annotations.json").write_text('{"images": [')
    result = run_module(["train.train", SMOKE, "--data", str(data), "--work-dir", str(tmp_path / "w")],
                        check=False, timeout=120)
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("option,message", [(("--slice-size", "5"), "slice_size must be between 128 and 2048"),
                                            (("--nms-iou", "2"), "nms_iou must be a number in (0, 1]")])
def test_evaluating_with_an_option_the_model_refuses(smoke_training, tmp_path, option, message):
    result = run_module(["train.evaluate", "--model", str(smoke_training["mar"]), "--limit", "2", *option,
                         "--gt", str(smoke_training["data"] / "valid" / "annotations.json"), "--out", str(tmp_path)],
                        check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "metrics.json").exists()


def test_archived_weights_load_as_tensors_only(smoke_training, tmp_path):
    with zipfile.ZipFile(smoke_training["mar"]) as mar:
        mar.extract("model.pth", tmp_path)
    state = torch.load(tmp_path / "model.pth", weights_only=True)["state_dict"]
    assert all(torch.is_tensor(v) for v in state.values()) and len(state) > 50


def test_evaluation_through_the_core_matches_mmdet_cocometric(smoke_training):
    """The core's mAP50 (pycocotools over our predictions) is close to what mmdet logged."""
    work = smoke_training["work_dir"]
    logged = [json.loads(line) for line in next(work.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    mmdet_map50 = [row["coco/bbox_mAP_50"] for row in logged if "coco/bbox_mAP_50" in row][-1]
    ours = read_json(work / "eval" / "metrics.json")["coco"]["mAP50"]
    assert ours == pytest.approx(mmdet_map50, abs=0.02)


def test_unreachable_checkpoint_gives_a_clear_message(synthetic_data, tmp_path):
    result = run_module(["train.train", "train/configs/tood_r50_fpn_acne04.py", "--data", str(synthetic_data),
                         "--work-dir", str(tmp_path / "w"), "--weights", "http://127.0.0.1:9/tood_coco.pth"],
                        check=False, timeout=120)
    assert result.returncode == 2
    assert "could not download http://127.0.0.1:9/tood_coco.pth" in result.stderr
    assert "--from-scratch" in result.stderr and "Traceback" not in result.stderr


def test_hub_checkpoint_offline_gives_a_clear_message(synthetic_data, tmp_path):
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(tmp_path / "w"),
                         "--weights", "hf://someone/tood-acne/model.pth"],
                        env={"HF_HUB_OFFLINE": "1"}, check=False, timeout=120)
    assert result.returncode == 2
    assert "someone/tood-acne" in result.stderr and "Traceback" not in result.stderr


def test_local_checkpoint_is_used_and_recorded(smoke_training, synthetic_data, tmp_path):
    checkpoint = read_json(smoke_training["work_dir"] / "run_meta.json")["checkpoint"]
    result = run_module(["train.train", "train/configs/tood_smoke.py", "--data", str(synthetic_data),
                         "--work-dir", str(tmp_path / "w"), "--weights", checkpoint, "--iters", "2",
                         "--no-eval", "--no-archive"], check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    # An explicit --weights wins over the smoke config's from-scratch default, and is recorded.
    assert read_json(tmp_path / "w" / "run_meta.json")["pretrained"] == f"checkpoint {checkpoint} (given with --weights)"
    assert "Load checkpoint from" in result.stdout + result.stderr


def test_training_starts_from_the_weights_of_a_mar(smoke_training, synthetic_data, tmp_path):
    # Fine-tuning an archived model (e.g. the demo model on one's own photos): at learning rate 0,
    # one iteration leaves the archive's weights as they were (running statistics aside).
    mar = smoke_training["mar"]
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(tmp_path / "w"),
                         "--weights", str(mar), "--iters", "1", "--lr", "0", "--no-eval", "--no-archive"])
    assert "Load checkpoint from" in result.stdout + result.stderr
    # Its provenance goes on: the smoke model was trained from scratch, and the new one says so.
    assert read_json(tmp_path / "w" / "run_meta.json")["pretrained"] == (
        f"the model archived in {mar} (train/configs/tood_smoke.py, 60 iterations), "
        f"which started from: none (trained from scratch)")
    # Past TOOD's initial ATSS epochs already: task-aligned assignment from the first iteration.
    assert Config.fromfile(tmp_path / "w" / "resolved_config.py").model.train_cfg.initial_epoch == 0
    with zipfile.ZipFile(mar) as archive, archive.open("model.pth") as f:
        archived = torch.load(f, map_location="cpu")["state_dict"]
    checkpoint = read_json(tmp_path / "w" / "run_meta.json")["checkpoint"]
    trained = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    learned = [k for k in archived if "running_" not in k and "num_batches_tracked" not in k]
    assert len(learned) > 50 and set(learned) <= set(trained)
    for key in learned:
        torch.testing.assert_close(trained[key].float(), archived[key].float(), msg=key)


def test_a_mar_fine_tuned_on_other_types_keeps_the_warm_up(smoke_training, synthetic_data, tmp_path):
    # The same photos with one type renamed: new class scores, so TOOD's ATSS warm-up stays.
    data = tmp_path / "renamed"
    shutil.copytree(synthetic_data, data)
    for split in ("train", "valid"):
        path = data / split / "annotations.json"
        coco = read_json(path)
        for category in coco["categories"]:
            category["name"] = category["name"].replace("comedone", "blackhead")
        path.write_text(json.dumps(coco))
    run_module(["train.train", SMOKE, "--data", str(data), "--work-dir", str(tmp_path / "w"),
                "--weights", str(smoke_training["mar"]), "--iters", "1", "--no-eval", "--no-archive"])
    resolved = Config.fromfile(tmp_path / "w" / "resolved_config.py")
    assert resolved.model.train_cfg.initial_epoch == 1  # the smoke config's
    assert resolved.train_dataloader.dataset.metainfo["classes"][0] == "blackhead"
    assert resolved.classes == resolved.train_dataloader.dataset.metainfo["classes"]  # not the base's ('acne',)


def test_a_mar_of_another_network_is_refused_with_its_config(smoke_training, synthetic_data, tmp_path):
    result = run_module(["train.train", "train/configs/tood_r50_fpn_acne04.py", "--data", str(synthetic_data),
                         "--work-dir", str(tmp_path / "w"), "--weights", str(smoke_training["mar"])],
                        check=False, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds another network than train/configs/tood_r50_fpn_acne04.py" in result.stderr
    assert "backbone.depth: the archive has 18, the config 50" in result.stderr
    assert "train it with train/configs/tood_smoke.py" in result.stderr
    not_an_archive = tmp_path / "photo.mar"
    not_an_archive.write_bytes(b"\xff\xd8 not a zip")
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(tmp_path / "w"),
                         "--weights", str(not_an_archive)], check=False, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{not_an_archive} is not a .mar archive (a zip file)" in result.stderr
    assert "Offline?" not in result.stderr and "Pass another --weights" in result.stderr


def test_training_needs_none_of_the_wheels_a_training_carry_leaves_out(synthetic_data, tmp_path):
    # A GPU machine that only trains carries no SAHI: bench/prepare_gpu_carry.sh (START=demo) removes
    # the wheels named below. It once removed shapely too, which mmdet imports: nothing ran (H100).
    script = (REPO / "bench" / "prepare_gpu_carry.sh").read_text()
    removed = re.search(r"rm \.carry/wheels/\{([a-z,]+)\}-\*\.whl", script).group(1).split(",")
    assert "sahi" in removed
    work = tmp_path / "w"
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in removed)  # any such import now fails
    code = (f"import runpy, sys; {blocked}; "
            f"sys.argv = ['train.train', {SMOKE!r}, '--data', {str(synthetic_data)!r}, '--work-dir', {str(work)!r}, "
            "'--iters', '2', '--no-eval', '--no-archive']; runpy.run_module('train.train', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_json(work / "run_meta.json")["iterations"] == 2


def test_reading_settings_and_importing_data_need_no_torch():
    """What only reads serving settings or imports data (train.archive's checks, train.data, face framing)
    loads neither torch nor mmdet: seconds saved on every such command."""
    code = ("import sys, train.data, trouble.settings, trouble.framing; "
            "print(sorted(name for name in ('torch', 'mmdet', 'mmcv', 'sahi') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr[-2000:])


@pytest.mark.parametrize("flag, value, message", [
    ("--iters", "0", "--iters must be at least 1, got 0"),
    ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
    ("--budget-minutes", "-1", "--budget-minutes must be a number more than 0, got -1.0"),
    ("--budget-minutes", "nan", "--budget-minutes must be a number more than 0, got nan"),
    ("--lr", "-0.01", "--lr must be a number, 0 or more, got -0.01"),
    ("--seed", "-1", "--seed must be at least 0, got -1"),
    ("--log-interval", "0", "--log-interval must be at least 1, got 0"),
    ("--backbone-weights", "lite0.pth", "--backbone-weights with --weights: the checkpoint holds the backbone too"),
])
def test_a_schedule_that_cannot_train_is_refused(synthetic_data, tmp_path, flag, value, message):
    # Refused before anything runs: no training, and no archive written over the model store's.
    store = tmp_path / "store"
    weights = ["--weights", "model_store/trouble.mar"] if flag == "--backbone-weights" else []
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(tmp_path / "w"),
                         "--model-store", str(store), flag, value, *weights], check=False, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not store.exists() and not (tmp_path / "w").exists()


def test_a_config_that_is_not_one_is_a_clear_error(synthetic_data, tmp_path):
    (tmp_path / "notes.txt").write_text("lr = 0.01\n")
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "typo.py").write_text("model = dict(type='TOOD'\n")  # a bracket left open: mmengine's traceback
    (tmp_path / "orphan.py").write_text("_base_ = ['missing_base.py']\n")
    (tmp_path / "runtime.py").write_text("lr = 1 / 0\n")  # an error only running it shows: it was a traceback
    for config, message in ((tmp_path / "notes.txt", "is not a .py config"), (tmp_path / "empty.py", "defines no model"),
                            (tmp_path / "typo.py", "cannot be read: SyntaxError"),
                            (tmp_path / "orphan.py", "cannot be read"),
                            (tmp_path / "runtime.py", "cannot be read: ZeroDivisionError")):
        result = run_module(["train.train", str(config), "--data", str(synthetic_data), "--work-dir",
                             str(tmp_path / "w"), "--model-store", str(tmp_path / "store")], check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    (tmp_path / "empty.pth").write_bytes(b"")  # a download cut short
    torch.save({"neck.conv.weight": torch.zeros(2, 2)}, tmp_path / "detector.pth")
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(tmp_path / "w"),
                         "--model-store", str(tmp_path / "store"), "--weights", str(tmp_path / "empty.pth")],
                        check=False, timeout=120)
    assert result.returncode == 2 and "is not a PyTorch checkpoint" in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr and not (tmp_path / "store").exists()
    # From an audit: --backbone-weights had been ignored in silence off an EfficientNet-Lite config, a missing
    # one was a FileNotFoundError traceback, and a URL that names no file an IsADirectoryError.
    lite = "train/configs/tood_efficientnet-lite0_fpn_acne04.py"
    for config, options, message in (
            (lite, ["--backbone-weights", str(tmp_path / "none.pth")], f"--backbone-weights {tmp_path / 'none.pth'} not found"),
            (SMOKE, ["--backbone-weights", str(tmp_path / "empty.pth")], "is for EfficientNet-Lite configs"),
            (lite, ["--backbone-weights", str(tmp_path / "empty.pth"), "--from-scratch"], "give one of them"),
            (SMOKE, ["--weights", "https://example.invalid/"], "names no file"),
            # A mistyped scheme had been told "not found ... Offline? Fetch it on a machine with internet".
            (SMOKE, ["--weights", "htps://example.invalid/tood.pth"], "is neither an http(s):// or hf:// address"),
            # Found in an audit: a file that is no weights, or a detector's checkpoint, was a torch traceback.
            (lite, ["--backbone-weights", str(tmp_path / "empty.pth")], "cannot be read as a file of tensors"),
            (lite, ["--backbone-weights", str(tmp_path / "detector.pth")], "holds no EfficientNet-Lite weights")):
        result = run_module(["train.train", config, "--data", str(synthetic_data), "--work-dir", str(tmp_path / "w"),
                             "--model-store", str(tmp_path / "store"), *options], check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr, (options, result.stderr[-1500:])
        assert "Traceback" not in result.stderr and ("Offline?" in result.stderr) == options[1].startswith("http")


def test_missing_data_is_a_clear_error(tmp_path):
    result = run_module(["train.train", SMOKE, "--data", str(tmp_path / "nothing"), "--work-dir", str(tmp_path)],
                        check=False, timeout=120)
    assert result.returncode == 2
    assert "annotations.json not found" in result.stderr and "Traceback" not in result.stderr


def test_data_a_run_would_fail_on_later_is_refused_before_it_starts(synthetic_data, tmp_path):
    """Found in the first seconds, not when training first samples the image or evaluation reads the
    grade, an hour in: a listed image that is gone (a symlinked import whose source moved), a grade
    outside 0..3 in a COCO file written by hand, --resume in a work dir with nothing to resume, and
    output folders that cannot be made."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    train = json.loads((data / "train" / "annotations.json").read_text())
    (data / "train" / train["images"][0]["file_name"]).unlink()
    base = ["train.train", SMOKE, "--work-dir", str(tmp_path / "w"), "--model-store", str(tmp_path / "store")]
    result = run_module([*base, "--data", str(data)], check=False, timeout=120)
    assert result.returncode == 2 and f"missing, e.g. {data / 'train' / train['images'][0]['file_name']}" \
        in result.stderr, result.stderr[-1500:]
    shutil.rmtree(data)
    shutil.copytree(synthetic_data, data)
    valid = json.loads((data / "valid" / "annotations.json").read_text())
    valid["images"][0]["grade"] = 7
    (data / "valid" / "annotations.json").write_text(json.dumps(valid))
    result = run_module([*base, "--data", str(data)], check=False, timeout=120)
    assert result.returncode == 2 and "grades that are not 0..3, e.g. 7" in result.stderr, result.stderr[-1500:]
    result = run_module([*base, "--data", str(synthetic_data), "--resume"], check=False, timeout=120)
    assert result.returncode == 2 and "holds no checkpoint to continue from" in result.stderr, result.stderr[-1500:]
    (tmp_path / "afile").write_text("")
    for flag in ("--work-dir", "--model-store"):
        result = run_module([*base, "--data", str(synthetic_data), flag, str(tmp_path / "afile" / "sub")],
                            check=False, timeout=120)
        assert result.returncode == 2 and f"{tmp_path / 'afile'} is a file" in result.stderr, result.stderr[-1500:]
    assert not (tmp_path / "store").exists() and "Traceback" not in result.stderr


def test_resume_continues_from_the_last_checkpoint(synthetic_data, tmp_path):
    work = tmp_path / "w"
    common = ["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(work), "--no-eval",
              "--no-archive", "--val-interval", "4"]
    first = run_module(common + ["--iters", "4"])
    checkpoint = (work / "iter_4.pth").read_bytes()
    # Found in an audit. Run again without --resume, it had overwritten the run's checkpoints in silence.
    again = run_module(common + ["--iters", "4"], check=False)
    assert again.returncode == 2 and "holds an earlier run (iter_4.pth, ...): --resume continues it, --overwrite " \
        "starts over" in again.stderr, again.stderr[-1500:]
    assert (work / "iter_4.pth").read_bytes() == checkpoint
    # --resume with --weights had resumed from those weights instead; a config's load_from (every real
    # config names its COCO checkpoint's URL) likewise, or, offline, failed to download it.
    both = run_module(common + ["--iters", "8", "--resume", "--weights", str(work / "iter_4.pth")], check=False)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    # Found in an audit: resumed with another model's config, the run failed while loading its checkpoint,
    # after its record (run_meta.json) was deleted and its resolved config replaced: it could not be archived.
    record, resolved = (work / "run_meta.json").read_bytes(), (work / "resolved_config.py").read_bytes()
    other_model = tmp_path / "other_model.py"
    other_model.write_text(f"_base_ = {str(REPO / SMOKE)!r}\nmodel = dict(bbox_head=dict(feat_channels=24))\n")
    other = run_module([common[0], str(other_model), *common[2:], "--iters", "8", "--resume"], check=False)
    assert other.returncode == 2 and "trained another model" in other.stderr and "Traceback" not in other.stderr, \
        other.stderr[-1500:]
    assert (work / "run_meta.json").read_bytes() == record and (work / "resolved_config.py").read_bytes() == resolved
    # --overwrite deleted the checkpoint --weights named, then failed to load it.
    overwrite = run_module(common + ["--iters", "2", "--overwrite", "--weights", str(work / "iter_4.pth")],
                           check=False)
    assert overwrite.returncode == 2 and "which --overwrite deletes" in overwrite.stderr, overwrite.stderr[-1500:]
    assert (work / "iter_4.pth").read_bytes() == checkpoint
    # A work dir copied from another machine: last_checkpoint names that machine's path; the checkpoint of
    # that name beside it is the one continued from.
    (work / "last_checkpoint").write_text("/gpu/server/work/iter_4.pth")
    config = tmp_path / "with_load_from.py"
    config.write_text(f"_base_ = {str(REPO / SMOKE)!r}\nload_from = 'https://example.invalid/coco.pth'\n")
    resumed = run_module([common[0], str(config), *common[2:], "--iters", "8", "--resume"])
    log = resumed.stdout + resumed.stderr
    assert "resumed" in log.lower() and "iter: 4" in log and "example.invalid" not in log
    assert read_json(work / "run_meta.json")["iterations"] == 8
    # The run keeps the start it had: the first run's, said again in its record.
    start = re.search(r"start: (.*)", first.stdout).group(1)
    assert read_json(work / "run_meta.json")["pretrained"] == start
    assert f"start: {start}" in resumed.stdout
    # --overwrite starts over in it.
    run_module(common + ["--iters", "2", "--overwrite"])
    assert read_json(work / "run_meta.json")["iterations"] == 2
    assert sorted(path.name for path in work.glob("*.pth")) == ["iter_2.pth"]  # none of the earlier run's


def test_time_budget_stops_training_and_saves_a_checkpoint(synthetic_data, tmp_path):
    work = tmp_path / "w"
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(work),
                         "--budget-minutes", "0.3", "--lr", "0.01", "--log-interval", "1", "--no-eval",
                         "--no-archive"])
    meta = read_json(work / "run_meta.json")
    log = result.stdout + result.stderr
    assert "Time budget of 0.3 min spent" in log
    # The progress line counts towards the budget's estimate, not the loop's bound of 10**7.
    progress = re.findall(r"Iter\(train\) \[\s*(\d+)/(\d+)\]", log)
    assert progress and all(int(total) < 10**6 for _, total in progress), progress
    # The warm-up ends with the first 10% of the budget, long before 100 iterations here: the
    # learning rate then nears the base 0.01 (ramped over 100 iterations it stays under 0.004).
    # Logged every iteration: on a busy machine a handful of iterations fill the budget.
    learning_rates = [float(lr) for lr in re.findall(r"\blr: ([0-9.e+-]+)", log)]
    assert learning_rates and max(learning_rates) > 0.005, learning_rates
    assert 0 < meta["iterations"] < 10**6
    assert meta["train_minutes"] < 1.0
    assert (work / f"iter_{meta['iterations']}.pth").is_file()

    # Resumed, the run goes on where its budget stood: with the same budget there is nothing left
    # (it had trained a whole new budget, from the top of its learning rate), with a larger one
    # the cosine goes on from the spent share (0.3 of 0.5 min: the rate starts near 0.0035 of 0.01).
    resume = ["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(work), "--resume", "--lr",
              "0.01", "--log-interval", "1", "--no-eval", "--no-archive"]
    spent = run_module(resume + ["--budget-minutes", "0.3"], check=False)
    assert spent.returncode == 2 and "has spent 0.3" in spent.stderr and "whole budget of 0.3" in spent.stderr, \
        spent.stderr[-2000:]
    assert read_json(work / "run_meta.json")["iterations"] == meta["iterations"]  # the run as it was
    resumed = run_module(resume + ["--budget-minutes", "0.5"])
    log = resumed.stdout + resumed.stderr
    assert "Time budget: 0.3" in log and "of 0.5 min spent before this resume" in log
    learning_rates = [float(lr) for lr in re.findall(r"\blr: ([0-9.e+-]+)", log)]
    assert learning_rates and max(learning_rates) < 0.0045, learning_rates
    assert read_json(work / "run_meta.json")["iterations"] > meta["iterations"]


def test_amp_needs_cuda_and_says_so(synthetic_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(tmp_path),
                         "--amp"], check=False, timeout=120)
    assert result.returncode == 2 and "--amp needs a CUDA GPU" in result.stderr


def test_float32_focal_losses_match_and_survive_autocast():
    from mmdet.models.losses import FocalLoss, QualityFocalLoss

    from trouble.models.float32_losses import FocalLossFP32, QualityFocalLossFP32

    torch.manual_seed(0)
    probs = torch.rand(64, 3).clamp(0.01, 0.99)
    labels = torch.randint(0, 4, (64,))
    scores = torch.rand(64)
    qfl = dict(use_sigmoid=True, activated=True, beta=2.0)
    expected = QualityFocalLoss(**qfl)(probs, (labels, scores))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = QualityFocalLossFP32(**qfl)(probs.bfloat16(), (labels, scores.bfloat16()))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=2e-2)  # inputs were rounded to bfloat16

    fl = dict(use_sigmoid=True, activated=True, gamma=2.0, alpha=0.25)
    expected = FocalLoss(**fl)(probs, labels.clamp(max=2))
    got = FocalLossFP32(**fl)(probs.half(), labels.clamp(max=2))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected.item(), rel=1e-2)


def test_tood_head_amp_keeps_boxes_finite_under_float16_autocast():
    """The H200 NaN: a box regression output past ~11 overflows float16 in exp() and in mmcv's
    deform_conv2d, which casts the boxes to the float16 offset's dtype. TOODHeadAMP keeps both in
    float32 (the plain head is run too, to show this input does overflow)."""
    from mmdet.models.dense_heads import TOODHead

    from trouble.models.tood_head_amp import TOODHeadAMP

    head_cfg = dict(num_classes=1, in_channels=32, stacked_convs=2, feat_channels=32, anchor_type="anchor_free",
                    anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8,
                                          scales_per_octave=1, strides=[8]),
                    initial_loss_cls=dict(type="FocalLoss", use_sigmoid=True, activated=True, gamma=2.0, alpha=0.25),
                    loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, activated=True, beta=2.0),
                    loss_bbox=dict(type="GIoULoss", loss_weight=2.0))
    features = (torch.randn(1, 32, 20, 20, generator=torch.Generator().manual_seed(0)),)
    boxes = {}
    for head_type in (TOODHead, TOODHeadAMP):
        torch.manual_seed(0)
        head = head_type(**head_cfg)
        torch.nn.init.constant_(head.tood_reg.bias, 12.0)  # exp(12) = 162755 > float16's 65504
        with torch.autocast("cpu", dtype=torch.float16):
            boxes[head_type.__name__] = head(features)[1][0]
        boxes[head_type.__name__ + " fp32"] = head(features)[1][0]
    assert not torch.isfinite(boxes["TOODHead"]).all()
    assert torch.isfinite(boxes["TOODHeadAMP"]).all()
    assert torch.allclose(boxes["TOODHeadAMP"], boxes["TOODHeadAMP fp32"], rtol=1e-2)


def test_diverging_training_stops_with_a_clear_error(smoke_training, synthetic_data, tmp_path):
    """In a work dir that holds a finished run (as `make train TRAIN_ARGS=--overwrite` reuses
    work_dirs/<config>): the stopped run leaves no record of the finished one beside its own config,
    so train.archive refuses the folder instead of packing one run's config with the other's classes
    and figures."""
    work = tmp_path / "w"
    shutil.copytree(smoke_training["work_dir"], work)
    result = run_module(["train.train", SMOKE, "--data", str(synthetic_data), "--work-dir", str(work),
                         "--iters", "30", "--lr", "5", "--no-eval", "--no-archive", "--overwrite"], check=False,
                        timeout=300)
    assert result.returncode == 2
    assert "error: training diverged at iteration" in result.stderr and "lower --lr" in result.stderr
    assert "Traceback" not in result.stderr
    archived = run_module(["train.archive", "--work-dir", str(work), "--out", str(tmp_path / "store")], check=False)
    assert archived.returncode == 2 and "run_meta.json not found" in archived.stderr, archived.stderr[-2000:]
    assert "one that stopped early" in archived.stderr and not (tmp_path / "store" / "trouble.mar").exists()


def test_ctrl_c_stops_training_with_a_message_and_no_traceback(synthetic_data, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "train.train", SMOKE, "--data", str(synthetic_data),
                                "--work-dir", str(tmp_path / "w"), "--iters", "1000", "--no-eval", "--no-archive"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    for line in process.stdout:  # the start line: past the imports, into the training
        if line.startswith("[train] ") and "start:" in line:
            break
    time.sleep(5)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    _, stderr = process.communicate(timeout=120)
    assert ended_by_ctrl_c(process.returncode, stderr, "interrupted: the checkpoints saved so far"), \
        (process.returncode, stderr[-2000:])
    assert "--resume" in stderr


def test_configs_inherit_mmdet_and_build():
    x101 = Config.fromfile(str(REPO / "train/configs/tood_x101-64x4d_fpn_acne04.py"))
    assert x101.model.type == "TOOD" and x101.model.backbone.type == "ResNeXt"
    assert x101.model.backbone.depth == 101 and x101.model.backbone.groups == 64
    assert "tood_x101_64x4d_fpn_mstrain_2x_coco" in x101.load_from
    r50 = Config.fromfile(str(REPO / "train/configs/tood_r50_fpn_acne04.py"))
    assert "tood_r50_fpn_1x_coco" in r50.load_from


def test_archive_a_work_dir_copied_from_another_machine(smoke_training, tmp_path):
    """What bench/gpu_session.sh brings back: run_meta.json (naming the checkpoint where it was on
    the GPU machine), the resolved config, and the checkpoint in float16 under its own name."""
    from trouble.inference import TroubleDetector

    work = smoke_training["work_dir"]
    meta = read_json(work / "run_meta.json")
    name = Path(meta["checkpoint"]).name
    copied = tmp_path / "demo_work"
    copied.mkdir()
    shutil.copy(work / "resolved_config.py", copied)
    (copied / "run_meta.json").write_text(json.dumps({**meta, "checkpoint": f"/tmp/work/demo/{name}"}))
    state = torch.load(meta["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    torch.save({"state_dict": {k: v.half() if v.is_floating_point() else v for k, v in state.items()}}, copied / name)
    run_module(["train.archive", "--work-dir", str(copied), "--out", str(tmp_path / "store")])
    detector = TroubleDetector.from_path(tmp_path / "store" / "trouble.mar", device="cpu")
    assert detector.classes == ["comedone", "papule", "pustule"]
    (copied / name).unlink()
    result = run_module(["train.archive", "--work-dir", str(copied), "--out", str(tmp_path / "store")], check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"checkpoint /tmp/work/demo/{name} not found (nor {name} in {copied})" in result.stderr
    # A copy cut short, one file at a time: one line naming the file, never a traceback.
    good = {path: path.read_bytes() for path in (copied / "resolved_config.py", copied / "run_meta.json")}
    torch.save({"state_dict": state}, copied / name)
    good[copied / name] = (copied / name).read_bytes()
    for damage, message in (((copied / name), "cannot be read as a checkpoint"),
                            ((copied / "resolved_config.py"), "resolved_config.py not found"),
                            ((copied / "run_meta.json"), "run_meta.json is not valid JSON")):
        if damage.suffix == ".json":
            damage.write_text('{"checkpoint": "/tmp/w')
        elif damage.suffix == ".py":
            damage.unlink()
        else:
            damage.write_bytes(b"")
        for command in (["train.archive", "--work-dir", str(copied), "--out", str(tmp_path / "store")],
                        ["train.evaluate", "--work-dir", str(copied), "--gt",
                         str(smoke_training["data"] / "valid" / "annotations.json"), "--out", str(tmp_path / "eval")]):
            result = run_module(command, check=False)
            assert result.returncode == 2 and message in result.stderr, (command[0], result.stderr[-800:])
            assert "Traceback" not in result.stderr
        damage.write_bytes(good[damage])
    result = run_module(["train.archive", "--mar", str(smoke_training["mar"]), "--out", str(copied / "run_meta.json")],
                        check=False)
    assert result.returncode == 2 and "is a file: give the folder for trouble.mar" in result.stderr


def test_archive_a_staged_model_folder(smoke_mar, tmp_path):
    """A staged folder (weights, config, settings; what bench/gpu_session.sh brought back before it
    brought back work dirs) becomes a .mar that loads."""
    from trouble.inference import TroubleDetector

    staged = tmp_path / "model"
    with zipfile.ZipFile(smoke_mar) as mar:
        for name in ("model.pth", "config.py", "model-config.yaml"):
            mar.extract(name, staged)
    run_module(["train.archive", "--model-dir", str(staged), "--out", str(tmp_path / "store"), "--version", "2.1"])
    detector = TroubleDetector.from_path(tmp_path / "store" / "trouble.mar", device="cpu")
    assert detector.classes == ["comedone", "papule", "pustule"]
    # Every answer names the archive: its version, when it was made, and its weights' hash.
    model = detector.predict(np.zeros((64, 64, 3), np.uint8))["model"]
    assert model["version"] == "2.1" and model["archived"].startswith(time.strftime("%Y-", time.gmtime()))
    assert model["weights_sha256"] == hashlib.sha256((staged / "model.pth").read_bytes()).hexdigest()[:16]
    with zipfile.ZipFile(tmp_path / "store" / "trouble.mar") as mar:
        assert json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"] == "2.1"
    result = run_module(["train.archive", "--model-dir", str(staged), "--out", str(tmp_path / "store"), "--version",
                         "2.1/../x"], check=False)
    assert result.returncode == 2 and "version (--version, or model_version in model-config.yaml) must be" in \
        result.stderr and "Traceback" not in result.stderr
    settings = (staged / "model-config.yaml").read_text()
    (staged / "model-config.yaml").write_text(settings.replace("trouble:", "troubles:"))  # edited by hand, badly
    result = run_module(["train.archive", "--model-dir", str(staged), "--out", str(tmp_path / "store")], check=False)
    assert result.returncode == 2 and "has no trouble.classes" in result.stderr and "Traceback" not in result.stderr
    (staged / "model-config.yaml").write_text(settings)
    (staged / "config.py").unlink()
    result = run_module(["train.archive", "--model-dir", str(staged), "--out", str(tmp_path / "store")], check=False)
    assert result.returncode == 2 and "lacks config.py" in result.stderr and "Traceback" not in result.stderr


def test_rearchive_with_the_report_of_its_settings(smoke_training, tmp_path):
    """--report puts the evaluation's headline into the archive, for the app; a report made at
    other settings is refused."""
    from trouble.inference import TroubleDetector

    report = smoke_training["work_dir"] / "eval" / "metrics.json"
    store = tmp_path / "store"
    run_module(["train.archive", "--mar", str(smoke_training["mar"]), "--report", str(report), "--out", str(store)])
    validation = TroubleDetector.from_path(store / "trouble.mar", device="cpu").model_info()["validation"]
    assert validation["mAP50"] == round(read_json(report)["coco"]["mAP50"], 3) and validation["images"] == 4
    result = run_module(["train.archive", "--mar", str(smoke_training["mar"]), "--report", str(report),
                         "--input-size", "480", "--out", str(store)], check=False)
    assert result.returncode == 2 and "the report was made with input_size" in result.stderr, result.stderr[-1000:]
    # Another model's evaluation (the demo's, one type) would be shown as this model's figures. From an
    # audit: other weights' report was taken in silence; a cut or edited report was a KeyError traceback.
    original = read_json(report)
    other_weights, no_f1, model_text = (tmp_path / f"{name}.json" for name in ("other", "no_f1", "model_text"))
    other_weights.write_text(json.dumps({**original, "model": {**original["model"], "weights_sha256": "f" * 16}}))
    no_f1.write_text(json.dumps({k: v for k, v in original.items() if k != "at_f1_optimal_thresholds"}))
    model_text.write_text(json.dumps({**original, "model": "x"}))
    zipfile.ZipFile(tmp_path / "empty.mar", "w").close()
    for wrong, message in ((report.parent / "thresholds.json", "is not an evaluation's metrics.json"),
                           (report.parent / "missing.json", "not found"),
                           (REPO / "model_store" / "demo_eval" / "metrics.json",
                            "the report evaluated a model of the types ['acne']"),
                           (other_weights, "the report evaluated other weights (SHA-256 ffffffffffffffff...)"),
                           (no_f1, "is not an evaluation's metrics.json"),
                           (model_text, "is not an evaluation's metrics.json")):
        result = run_module(["train.archive", "--mar", str(smoke_training["mar"]), "--report", str(wrong),
                             "--out", str(store)], check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    result = run_module(["train.archive", "--mar", str(tmp_path / "empty.mar"), "--out", str(store)], check=False)
    assert result.returncode == 2 and "holds no model-config.yaml: it is not a model archive" in result.stderr

    # Archived again without a report: the figures stay where they still describe what is served
    # (a batch size), and are left out where they would not (they were measured at other settings).
    def validation_after(*options):
        again = tmp_path / "again"
        result = run_module(["train.archive", "--mar", str(store / "trouble.mar"), *options, "--out", str(again)])
        return TroubleDetector.from_path(again / "trouble.mar", device="cpu").model_info().get("validation"), result

    kept, _ = validation_after("--batch-size", "2", "--sliced", "false")
    assert kept == validation
    for options, named in ((["--input-size", "480"], "input size"), (["--nms-iou", "0.7"], "NMS IoU"),
                           (["--thresholds-json", '{"papule": 0.9}'], "score thresholds"),
                           (["--framing", "face"], "framing"),
                           (["--brighten-dark", "false"], "brightening of dark photos"),
                           (["--slice-size", "480"], "slice size")):  # validated sliced (its report says so)
        dropped, result = validation_after(*options)
        assert dropped is None and f"measured with another {named}" in result.stdout, (options, result.stdout)


def test_rearchive_a_mar_with_another_input_size_and_thresholds(smoke_mar, tmp_path):
    from trouble.inference import TroubleDetector

    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"papule": 0.42}))
    store = tmp_path / "store"
    run_module(["train.archive", "--mar", str(smoke_mar), "--input-size", "480", "--thresholds-json", str(thresholds),
                "--batch-size", "3", "--slice-batch-size", "8", "--nms-iou", "0.45", "--sliced", "false",
                "--slice-size", "512", "--framing", "face", "--max-model-passes", "500", "--max-seconds-per-photo",
                "600", "--brighten-dark", "false", "--out", str(store)])
    with zipfile.ZipFile(smoke_mar) as old, zipfile.ZipFile(store / "trouble.mar") as new:
        assert new.read("model.pth") == old.read("model.pth")  # the weights are untouched
        assert yaml.safe_load(old.read("model-config.yaml"))["batchSize"] == 1  # the default: one request per call
        assert yaml.safe_load(new.read("model-config.yaml"))["batchSize"] == 3
        before = yaml.safe_load(old.read("model-config.yaml"))["trouble"]
        after = yaml.safe_load(new.read("model-config.yaml"))["trouble"]
    assert after["input_size"] == 480 and after["slicing"]["batch_size"] == 8 and after["nms_iou"] == 0.45
    assert after["score_thresholds"] == {**before["score_thresholds"], "papule": 0.42}
    detector = TroubleDetector.from_path(store / "trouble.mar", device="cpu")
    assert detector.input_size == 480 and detector.thresholds["papule"] == 0.42
    assert detector.settings.slicing.batch_size == 8 and detector.nms_iou == 0.45
    assert before["slicing"]["enabled"] is True and after["slicing"]["enabled"] is False
    assert after["slicing"]["slice_size"] == 512
    assert before["framing"] == "none" and after["framing"] == "face" and detector.settings.framing == "face"
    assert before["max_model_passes"] == 200 and detector.settings.max_model_passes == 500
    assert before["max_seconds_per_photo"] == 240 and detector.settings.max_seconds_per_photo == 600
    assert before["brighten_dark"] is True and detector.settings.brighten_dark is False
    # Every serving setting is written out in a new archive, to be read and changed there.
    from trouble.settings import ModelSettings

    assert {f.name for f in dataclasses.fields(ModelSettings)} - {"validation"} <= set(before)
    # A request that does not ask for slicing gets the archive's default (off); one that asks, gets it.
    photo = np.zeros((1200, 1600, 3), np.uint8)
    assert detector.predict(photo)["settings"]["slices"] == 0
    assert detector.predict(photo, sliced=True)["settings"]["slices"] > 1

    thresholds.write_text(json.dumps({"rash": 0.3}))
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--thresholds-json", str(thresholds),
                         "--out", str(store)], check=False)
    assert result.returncode == 2 and "types the model does not have: ['rash']" in result.stderr
    # The passes' thresholds are checked as the model's are.
    for given, message in (('{"rash": 0.3}', "tta.score_thresholds has thresholds for types the model does not "
                                             "have: ['rash']"),
                            ('{"papule": "high"}', "tta.score_thresholds must be numbers in [0, 1]")):
        result = run_module(["train.archive", "--mar", str(smoke_mar), "--tta-thresholds-json", given,
                             "--out", str(store)], check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    thresholds.write_text("{not json")
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--thresholds-json", str(thresholds),
                         "--out", str(store)], check=False)
    assert result.returncode == 2 and f"thresholds file {thresholds}" in result.stderr
    assert "Traceback" not in result.stderr
    # The thresholds may be given as JSON text instead of a file; an F1-optimal one halfway between two
    # answered scores keeps its fifth decimal (0.2318 would keep boxes the evaluation at 0.23185 dropped).
    run_module(["train.archive", "--mar", str(store / "trouble.mar"), "--thresholds-json",
                '{"papule": 0.37, "pustule": 0.23185}', "--out", str(store)])
    with zipfile.ZipFile(store / "trouble.mar") as new:
        served = yaml.safe_load(new.read("model-config.yaml"))["trouble"]["score_thresholds"]
    assert served["papule"] == 0.37 and served["pustule"] == 0.23185
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--thresholds-json", '{"papule": }',
                         "--out", str(store)], check=False)
    assert result.returncode == 2 and "thresholds '{\"papule\": }' are not valid JSON" in result.stderr
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--batch-size", "0", "--out", str(store)],
                        check=False)
    assert result.returncode == 2 and "batch size must be between 1 and 64, got 0" in result.stderr
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--slice-batch-size", "100", "--out", str(store)],
                        check=False)
    assert result.returncode == 2 and "slicing.batch_size (slices per forward pass) must be between 1 and 64, got 100" \
        in result.stderr
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--nms-iou", "0", "--out", str(store)], check=False)
    assert result.returncode == 2 and "nms_iou must be a number in (0, 1], got 0.0" in result.stderr
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--slice-size", "5", "--out", str(store)],
                        check=False)
    assert result.returncode == 2 and "slice_size must be between 128 and 2048, got 5" in result.stderr
    result = run_module(["train.archive", "--mar", str(tmp_path / "missing.mar"), "--out", str(store)], check=False)
    assert result.returncode == 2 and f"{tmp_path / 'missing.mar'} not found" in result.stderr
    # Settings an archive would not take are refused, not ignored.
    result = run_module(["train.archive", "--work-dir", str(tmp_path), "--input-size", "800", "--nms-iou", "0.5",
                         "--out", str(tmp_path / "refused")], check=False)
    assert result.returncode == 2 and "--input-size, --nms-iou: only with --mar (archive first" in result.stderr, result.stderr
    result = run_module(["train.archive", "--mar", str(smoke_mar), "--half", "--out", str(tmp_path / "refused")],
                        check=False)
    assert result.returncode == 2 and "--half works with --work-dir only" in result.stderr
    assert not (tmp_path / "refused").exists()


def test_rearchive_with_test_time_augmentation_and_its_report(smoke_training, tmp_path):
    """--tta, --tta-sizes and --tta-thresholds-json set the archive's passes and their thresholds;
    an evaluation with --tta true is the report that matches it, one without is refused."""
    from trouble.inference import TroubleDetector

    mar, store = smoke_training["mar"], tmp_path / "store"
    thresholds = tmp_path / "tta_thresholds.json"
    thresholds.write_text(json.dumps({"papule": 0.11}))
    run_module(["train.archive", "--mar", str(mar), "--tta", "true", "--tta-sizes", "256,320",
                "--tta-thresholds-json", str(thresholds), "--out", str(store)])
    detector = TroubleDetector.from_path(store / "trouble.mar", device="cpu")
    assert detector.settings.tta.enabled and detector.settings.tta.sizes == [256, 320]
    assert detector.tta_thresholds["papule"] == 0.11 and detector.thresholds["papule"] != 0.11
    answer = detector.predict(np.zeros((360, 480, 3), np.uint8))
    assert answer["settings"]["passes"] == 4 and answer["settings"]["score_thresholds"]["papule"] == 0.11
    assert detector.predict(np.zeros((360, 480, 3), np.uint8), tta=False)["settings"]["passes"] == 1

    gt = smoke_training["data"] / "valid" / "annotations.json"
    run_module(["train.evaluate", "--model", str(store / "trouble.mar"), "--limit", "2", "--gt", str(gt),
                "--out", str(tmp_path / "eval")])
    report = read_json(tmp_path / "eval" / "metrics.json")
    assert report["model"]["tta"] == {"sizes": [256, 320], "flip": True, "fuse_iou": 0.55}
    assert report["at_thresholds"]["per_type"]["papule"]["threshold"] == 0.11  # the passes' own thresholds
    run_module(["train.archive", "--mar", str(store / "trouble.mar"), "--report", str(tmp_path / "eval" / "metrics.json"),
                "--out", str(tmp_path / "with_report")])
    result = run_module(["train.archive", "--mar", str(mar), "--report", str(tmp_path / "eval" / "metrics.json"),
                         "--out", str(tmp_path / "refused")], check=False)
    assert result.returncode == 2 and "the report was made with test-time augmentation" in result.stderr
    for sizes, message in (("64", "--tta-sizes must each be between 128 and 2048 px, got '64'"),
                           ("big", "--tta-sizes must be comma-separated integers, got 'big'")):
        result = run_module(["train.archive", "--mar", str(mar), "--tta-sizes", sizes, "--out", str(store)],
                            check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_an_interrupted_rearchive_leaves_its_own_input_whole(tmp_path):
    """`--mar model_store/trouble.mar --out model_store` rewrites its own input. Ctrl-C (SIGINT to the
    process group, as a terminal sends it) while it works leaves the old archive or the new one, whole;
    before, the archiver wrote in place and an interrupt left a truncated zip. The demo archive: its
    20 MB take long enough to be interrupted at several points."""
    mar = tmp_path / "trouble.mar"
    original = (REPO / "model_store" / "trouble.mar").read_bytes()
    command = [sys.executable, "-m", "train.archive", "--mar", str(mar), "--input-size", "480", "--out", str(tmp_path)]

    def timed(args) -> float:
        started = time.monotonic()
        subprocess.run(args, cwd=REPO, capture_output=True, check=True, timeout=300)
        return time.monotonic() - started

    mar.write_bytes(original)
    imports_s = timed([sys.executable, "-c", "import train.archive"])
    working_s = timed(command) - imports_s
    exit_codes = []
    for fraction in (0.2, 0.4, 0.6, 0.8):
        mar.write_bytes(original)
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        time.sleep(imports_s + fraction * working_s)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        exit_codes.append(process.returncode)
        with zipfile.ZipFile(mar) as archive:  # a zip, whole: every member reads back
            assert archive.testzip() is None
            input_size = yaml.safe_load(archive.read("model-config.yaml"))["trouble"]["input_size"]
        unchanged = mar.read_bytes() == original
        # The new archive with -2: the interrupt landed after it was in place, as Python was exiting.
        assert unchanged or (input_size == 480 and process.returncode in (0, -signal.SIGINT)), (
            process.returncode, stderr[-2000:])
        if process.returncode == 130:
            assert "Traceback" not in stderr and f"{mar} is as it was" in stderr, stderr[-2000:]
        else:  # finished first (0), or was stopped while Python was still importing (-2, nothing begun)
            assert process.returncode in (0, -signal.SIGINT), stderr[-2000:]
        assert not list(tmp_path.glob(".trouble.mar.partial-*"))  # no half-copied file left beside it
    assert 130 in exit_codes, f"no interrupt landed while it worked: exit codes {exit_codes}"


def test_two_archive_runs_at_once_each_pack_their_own_model(smoke_mar, tmp_path):
    """torch-model-archiver stages in $TMPDIR/trouble: two runs at once (two trainings, or one beside
    the tests) packed each other's settings, or failed, until each run was given its own TMPDIR."""
    for round_number in range(3):
        runs = {size: subprocess.Popen([sys.executable, "-m", "train.archive", "--mar", str(smoke_mar),
                                        "--input-size", str(size), "--out", str(tmp_path / f"{round_number}-{size}")],
                                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for size in (416, 480)}
        for size, process in runs.items():
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-2000:]
            with zipfile.ZipFile(tmp_path / f"{round_number}-{size}" / "trouble.mar") as archive:
                assert yaml.safe_load(archive.read("model-config.yaml"))["trouble"]["input_size"] == size


def test_a_work_dir_whose_evaluation_cannot_be_read_is_archived_without_it(smoke_training, tmp_path):
    """From an audit: an eval/metrics.json cut short (or not an object) was a traceback in train.archive."""
    work = tmp_path / "w"
    shutil.copytree(smoke_training["work_dir"], work)
    for broken in ("not json{", "[1, 2]"):
        (work / "eval" / "metrics.json").write_text(broken)
        result = run_module(["train.archive", "--work-dir", str(work), "--out", str(tmp_path / "store")])
        assert "its thresholds and figures are not used" in result.stdout and "Traceback" not in result.stderr
        with zipfile.ZipFile(tmp_path / "store" / "trouble.mar") as mar:
            assert "validation" not in yaml.safe_load(mar.read("model-config.yaml"))["trouble"]


def test_a_resume_compares_models_by_their_weights_not_how_they_start(tmp_path):
    """--resume refuses a config of another model; the same model started from other backbone weights, or
    trained with --amp (float32 versions of some parts) on a GPU, is the same model."""
    import copy

    from train.train import same_model, use_float32_parts

    config = Config.fromfile("train/configs/tood_efficientnet-lite0_fpn_acne04.py")
    earlier = copy.deepcopy(config)
    earlier.model.backbone.weights_path = str(tmp_path / "lite0.pth")
    use_float32_parts(earlier)
    earlier.dump(str(tmp_path / "resolved_config.py"))
    assert same_model(tmp_path / "resolved_config.py", config)
    config.model.bbox_head.feat_channels = 8
    assert not same_model(tmp_path / "resolved_config.py", config)
    assert same_model(tmp_path / "none.py", config)  # a work dir from before resolved configs: nothing to tell


def test_evaluate_keeps_an_earlier_report_and_says_what_it_scored(smoke_training, tmp_path):
    """From an audit: a report of 283 photos was replaced by one of 3 without a word; predictions moved
    away from their report were scored against every photo without a note; a ground truth with a type
    the model lacks ran the model over every photo before the refusal; a report scored again from
    saved predictions did not say which model made them."""
    gt = smoke_training["data"] / "valid" / "annotations.json"
    base = ["train.evaluate", "--model", str(smoke_training["mar"]), "--limit", "1", "--gt", str(gt)]
    run_module([*base, "--out", str(tmp_path / "run")])
    first = (tmp_path / "run" / "metrics.json").read_bytes()
    again = run_module([*base, "--out", str(tmp_path / "run")], check=False)
    assert again.returncode == 2 and "holds an earlier report (metrics.json, metrics.md" in again.stderr
    assert "pass --overwrite" in again.stderr and (tmp_path / "run" / "metrics.json").read_bytes() == first
    run_module([*base, "--out", str(tmp_path / "run"), "--overwrite"])

    predictions = tmp_path / "run" / "predictions.json"
    run_module(["train.evaluate", "--predictions", str(predictions), "--limit", "1", "--gt", str(gt),
                "--out", str(tmp_path / "rescored")])
    rescored, run = read_json(tmp_path / "rescored" / "metrics.json"), read_json(tmp_path / "run" / "metrics.json")
    assert rescored["model"]["weights_sha256"] == run["model"]["weights_sha256"] is not None
    assert rescored["model"]["predictions_file"] == str(predictions) and rescored["data"]["limit"] == 1
    shutil.copy(predictions, tmp_path / "loose.json")  # away from the report that says --limit 1
    loose = run_module(["train.evaluate", "--predictions", str(tmp_path / "loose.json"), "--gt", str(gt),
                        "--out", str(tmp_path / "loose")])
    assert "the predictions name 1 of the 4 images" in loose.stdout, loose.stdout

    coco = read_json(gt)
    with_rash = tmp_path / "rash.json"
    with_rash.write_text(json.dumps({**coco, "categories": coco["categories"] + [{"id": 99, "name": "rash"}]}))
    refused = run_module([*base[:-2], "--gt", str(with_rash), "--out", str(tmp_path / "rash")], check=False)
    assert refused.returncode == 2 and "has types the model does not know: ['rash']" in refused.stderr
    assert "running the model" not in refused.stdout and "Traceback" not in refused.stderr
    no_images = tmp_path / "none.json"
    no_images.write_text(json.dumps({**coco, "images": [], "annotations": []}))
    refused = run_module([*base[:-2], "--gt", str(no_images), "--out", str(tmp_path / "none")], check=False)
    assert refused.returncode == 2 and "no images to evaluate on" in refused.stderr
