"""The benchmarks under bench/ run on CPU (the GPU figures come from the same scripts)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

from tests.conftest import ACNE04_PHOTOS, REPO, read_json, run_module


def test_train_speed_runs_on_cpu_with_the_smoke_config(synthetic_data, tmp_path):
    out = tmp_path / "train_speed.json"
    result = run_module(["bench.train_speed", "--config", "train/configs/tood_smoke.py", "--data", str(synthetic_data),
                         "--batch-size", "2", "--iters", "6", "--warmup", "2", "--workers", "0",
                         "--settings", "fp32,fast,fp32", "--stages", "2", "--out", str(out)], timeout=300)
    report = read_json(out)
    # On a CPU only the float32 baseline runs (AMP needs CUDA), and the run says what it left out.
    # Named twice, it runs twice in the one process: every setting after the first failed on the
    # H100 (mmengine's visualizer of the first run, writing into its removed folder).
    assert [row["setting"] for row in report["results"]] == ["fp32", "fp32"] and report["speedup_against"] == "fp32"
    assert "setting fp32 failed" not in result.stdout
    assert "left out: fast (they need CUDA)" in result.stdout and "speed-up against fp32" in result.stdout
    assert report["results"][0]["speedup"] == 1.0
    assert "fp32" in result.stdout and "images/s" in result.stdout
    for row in report["results"]:  # the second run as whole as the first
        assert row["images_per_s"] > 0
        assert len(row["losses"]) == 6 and all(math.isfinite(loss) for loss in row["losses"])
        assert row["tflop_per_iter"] > 0 and "flop_count_error" not in row
        # Then where an iteration's time goes, stage by stage.
        assert "stages_error" not in row
        assert list(row["stages_ms"]) == ["preprocess", "backbone+neck", "head", "assign+loss", "backward", "optimizer"]
        assert all(ms > 0 for ms in row["stages_ms"].values())
        assert 0 < row["outside_network_share"] < 1
    assert "Where an iteration's time goes" in result.stdout


def test_train_speed_names_missing_data(tmp_path):
    result = run_module(["bench.train_speed", "--config", "train/configs/tood_smoke.py", "--data", str(tmp_path),
                         "--out", str(tmp_path / "x.json")], check=False, timeout=120)
    assert result.returncode != 0 and "annotations.json not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_benchmarks_name_a_missing_model(tmp_path):
    missing = tmp_path / "missing.mar"
    for module, extra in (("bench.inference_speed", []), ("bench.large_photos", ["--gt", "x.json"]),
                          ("bench.slicing_settings", ["--gt", "x.json"]),
                          ("bench.test_time_augmentation", ["--gt", "x.json"])):
        result = run_module([module, "--model", str(missing), "--out", str(tmp_path / "x.json"), *extra],
                            check=False, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, module
        assert f"argument --model: {missing} not found" in result.stderr, module


def test_benchmarks_refuse_values_that_mean_nothing(smoke_mar, tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    for module, option, value, message in (
            ("bench.large_photos", "--limit", "0", "argument --limit: must be at least 1, got 0"),
            ("bench.large_photos", "--scale", "0", "argument --scale: must be a number more than 0, got 0.0"),
            ("bench.test_time_augmentation", "--sizes", "640,5",
             "argument --sizes: must be between 128 and 2048 pixels, got 5"),
            ("bench.test_time_augmentation", "--fuse-iou", "1.5", "argument --fuse-iou: must be in (0, 1], got 1.5"),
            ("bench.inference_speed", "--batch-sizes", "1,x", "argument --batch-sizes: expected an integer, got 'x'"),
            ("bench.inference_speed", "--repeats", "0", "argument --repeats: must be at least 1, got 0")):
        scored = [] if module == "bench.inference_speed" else ["--gt", str(gt)]  # it times, it does not score
        result = run_module([module, "--model", str(smoke_mar), *scored, "--out", str(tmp_path / "x.json"),
                             option, value], check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, module
    result = run_module(["bench.nms_iou", "--predictions", str(tmp_path / "none.json"), "--gt", str(gt),
                         "--out", str(tmp_path / "x.json")], check=False, timeout=120)
    assert result.returncode == 2 and f"argument --predictions: {tmp_path / 'none.json'} not found" in result.stderr
    result = run_module(["bench.nms_iou", "--predictions", str(gt), "--gt", str(gt), "--out", str(tmp_path)],
                        check=False, timeout=120)  # a folder: refused before the run, not after it
    assert result.returncode == 2 and f"argument --out: {tmp_path} is a folder" in result.stderr
    # --out naming an input: refused, the input untouched (predictions take a model run to make again).
    predictions = tmp_path / "predictions.json"
    predictions.write_text("[]")
    result = run_module(["bench.nms_iou", "--predictions", str(predictions), "--gt", str(gt),
                         "--out", str(predictions)], check=False, timeout=120)
    assert result.returncode == 2 and "is the --predictions file" in result.stderr and predictions.read_text() == "[]"
    # A --model that is no model: one line, not a traceback.
    result = run_module(["bench.test_time_augmentation", "--model", str(gt), "--gt", str(gt),
                         "--out", str(tmp_path / "x.json")], check=False, timeout=120)
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr, result.stderr
    # --photos is a folder; a broken photo in it is named.
    result = run_module(["bench.load_test", "--model", str(smoke_mar), "--photos", str(gt), "--out",
                         str(tmp_path / "x.json")], check=False, timeout=120)
    assert result.returncode == 2 and f"argument --photos: {gt} is not a folder" in result.stderr
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"not a photo")
    result = run_module(["bench.inference_speed", "--model", str(smoke_mar), "--photos", str(photos), "--no-server",
                         "--out", str(tmp_path / "x.json")], check=False, timeout=120)
    assert result.returncode == 2 and "a photo in --photos cannot be read" in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    # A folder as --model: named as a folder (it said "not found" of a folder that exists).
    for module, extra, message in (("bench.load_test", [], "is a folder: TorchServe serves a .mar file"),
                                   ("bench.inference_speed", [], "is a folder: give a .mar"),
                                   ("bench.inference_speed", ["--no-server"], "is no model folder")):
        result = run_module([module, "--model", str(photos), *extra, "--out", str(tmp_path / "x.json")], check=False,
                            timeout=120)
        assert result.returncode == 2 and message in result.stderr, (module, result.stderr[-1500:])
    # From an audit: each refused at once, the inputs untouched.
    config = tmp_path / "my_smoke.py"
    config.write_text((REPO / "train" / "configs" / "tood_smoke.py").read_text())
    before = config.read_text()
    (tmp_path / "afile").write_text("")
    small_gt = tmp_path / "small_gt.json"
    small_gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                                    "annotations": [], "categories": [{"id": 1, "name": "acne"}]}))
    for command, message in (
            (["bench.train_speed", "--config", str(config), "--data", "x", "--out", str(config)],
             "is the --config file"),  # it replaced the config with its JSON
            (["bench.nms_iou", "--predictions", str(predictions), "--gt", str(gt), "--out",
              str(tmp_path / "afile" / "x.json")], str(tmp_path / "afile") + " is a file, so "),
            (["bench.nms_iou", "--predictions", str(tmp_path), "--gt", str(gt), "--out", str(tmp_path / "x.json")],
             "is a folder: give a file in it"),
            (["bench.nms_iou", "--predictions", str(gt), "--gt", str(small_gt), "--out", str(tmp_path / "x.json")],
             "is not a list of COCO results"),  # a metrics.json or a ground truth given instead
            (["bench.large_photos", "--model", str(smoke_mar), "--gt", str(gt), "--scale", "inf", "--out",
              str(tmp_path / "x.json")], "argument --scale: must be a number more than 0, got inf"),
            (["bench.load_test", "--model", str(smoke_mar), "--retry-budget", "-5", "--out", str(tmp_path / "x.json")],
             "argument --retry-budget: must be a number more than 0")):
        result = run_module(command, check=False, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, \
            (command[0], result.stderr[-1500:])
    assert config.read_text() == before


def test_benchmarks_name_data_the_model_does_not_fit_and_impossible_settings(smoke_mar, synthetic_data, tmp_path):
    """A one-type ground truth for the three-type smoke model: one line naming it, for every scoring bench."""
    shutil.copytree(synthetic_data / "valid", tmp_path / "valid")
    one_type = tmp_path / "valid" / "one_type.json"  # beside its photos
    gt = read_json(synthetic_data / "valid" / "annotations.json")
    one_type.write_text(json.dumps(dict(gt, categories=[{"id": 1, "name": "acne"}], annotations=[])))
    for module in ("bench.large_photos", "bench.slicing_settings", "bench.test_time_augmentation"):
        result = run_module([module, "--model", str(smoke_mar), "--gt", str(one_type), "--limit", "1",
                             "--out", str(tmp_path / "x.json")], check=False, timeout=300)
        assert result.returncode == 2 and "are not categories of" in result.stderr, (module, result.stderr[-1500:])
        assert "Traceback" not in result.stderr, module
    for module, args, message in (
            ("bench.train_speed", ["--config", "train/configs/tood_smoke.py", "--data", str(synthetic_data),
                                   "--iters", "2", "--warmup", "2"], "leaves none of the 2 --iters to time"),
            ("bench.train_speed", ["--config", "train/configs/nope.py", "--data", str(synthetic_data)],
             "config train/configs/nope.py not found"),
            ("bench.inference_speed", ["--model", str(smoke_mar), "--device", "gpu"], "expected cpu, cuda or cuda:N")):
        result = run_module([module, *args, "--out", str(tmp_path / "x.json")], check=False, timeout=300)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_train_speed_names_an_unknown_setting(synthetic_data, tmp_path):
    result = run_module(["bench.train_speed", "--config", "train/configs/tood_smoke.py", "--data", str(synthetic_data),
                         "--settings", "fp32,turbo", "--out", str(tmp_path / "x.json")], check=False, timeout=120)
    assert result.returncode != 0 and "unknown setting(s) ['turbo']" in result.stderr
    assert "Traceback" not in result.stderr


def test_inference_speed_in_process_and_through_torchserve(smoke_mar, tmp_path):
    out = tmp_path / "speed.json"
    result = run_module(["bench.inference_speed", "--model", str(smoke_mar), "--repeats", "1", "--large-repeats", "1",
                         "--batch-sizes", "1,4", "--out", str(out)], timeout=600)
    report = read_json(out)
    assert report["device"] == "CPU"
    assert report["photo_640"]["same_detections"]  # the server answers what the core answers
    assert report["photo_640"]["memory_format"]["same_detections"]  # channels_last changes no detection
    rows = report["photo_12mp"]["by_batch_size"]
    assert [row["batch_size"] for row in rows] == [1, 4]
    assert rows[1]["vs_reference"]["same"], rows[1]["vs_reference"]  # batching slices changes no detection
    assert report["photo_12mp"]["slices"] > 1
    assert "through TorchServe" in result.stdout


def test_inference_speed_without_a_server(smoke_mar, tmp_path):
    from PIL import Image

    out, photos = tmp_path / "speed.json", tmp_path / "photos"
    photos.mkdir()
    Image.open(ACNE04_PHOTOS[0]).resize((800, 600)).save(photos / "wide.jpg")
    result = run_module(["bench.inference_speed", "--model", str(smoke_mar), "--no-server", "--photos", str(photos),
                         "--repeats", "1", "--large-repeats", "1", "--batch-sizes", "1,2", "--out", str(out)],
                        timeout=600)
    report = read_json(out)
    # The table names the photos' own size, not the 640x640 of the default photos.
    assert report["photo_size"] == "800x600" and "| 800x600 photo, in process |" in result.stdout
    assert "torchserve" not in report["photo_640"] and "torchserve" not in report["photo_12mp"]
    assert report["photo_12mp"]["by_batch_size"][1]["vs_reference"]["same"]


def test_nms_iou_rows_from_an_evaluations_saved_detections(smoke_training, tmp_path):
    work, out = smoke_training["work_dir"], tmp_path / "nms.json"
    result = run_module(["bench.nms_iou", "--predictions", str(work / "eval" / "predictions.json"), "--gt",
                         str(smoke_training["data"] / "valid" / "annotations.json"), "--ious", "0.6,0.3,0.1",
                         "--nested", "0.9,0.5", "--threshold", "0.05", "--out", str(out)], timeout=300)
    rows = read_json(out)["rows"]
    assert [row.get("nms_iou") for row in rows] == [0.6, 0.3, 0.1, None, None]
    assert [row.get("nested_ios") for row in rows[3:]] == [0.9, 0.5] and rows[3]["detections"] >= rows[4]["detections"]
    assert "| nested IoS 0.5 |" in result.stdout
    rows = rows[:3]
    kept = [row["detections"] for row in rows]
    assert kept[0] > kept[2] and kept == sorted(kept, reverse=True)  # stricter NMS keeps fewer boxes
    assert all(0.0 <= row["mAP50"] <= 1.0 and row["count_mae"] >= 0 for row in rows)
    assert all(set(row["f1_optimal_thresholds"]) == {"comedone", "papule", "pustule"} for row in rows)
    assert "| NMS IoU 0.3 |" in result.stdout
    # An earlier run's results (the committed ones in bench/results) are replaced only when asked.
    command = ["bench.nms_iou", "--predictions", str(work / "eval" / "predictions.json"), "--gt",
               str(smoke_training["data"] / "valid" / "annotations.json"), "--ious", "0.5", "--out", str(out)]
    again = run_module(command, check=False, timeout=300)
    assert again.returncode == 2 and "exists (an earlier run's results)" in again.stderr and "--overwrite" in again.stderr
    assert len(read_json(out)["rows"]) == 5
    run_module([*command, "--overwrite"], timeout=300)
    assert [row.get("nms_iou") for row in read_json(out)["rows"]] == [0.5]
    assert read_json(out)["context"]["machine"]["torch_threads"] >= 1


def test_benchmarks_refuse_what_would_score_the_wrong_photos_or_wait_for_nothing(smoke_training, tmp_path):
    """From an audit: a --limit run's detections scored against every photo (mAP50 0.004 for 0.117) with
    exit 0; a file that is no .mar made load_test wait 180 s for TorchServe, then a traceback; a photo
    that cannot be read was a PIL traceback."""
    limited = tmp_path / "limited"
    limited.mkdir()
    shutil.copy(smoke_training["work_dir"] / "eval" / "predictions.json", limited)
    report = read_json(smoke_training["work_dir"] / "eval" / "metrics.json")
    (limited / "metrics.json").write_text(json.dumps({**report, "data": {**report["data"], "limit": 2}}))
    gt = str(smoke_training["data"] / "valid" / "annotations.json")
    result = run_module(["bench.nms_iou", "--predictions", str(limited / "predictions.json"), "--gt", gt,
                         "--out", str(tmp_path / "n.json")], check=False, timeout=300)
    assert result.returncode == 2 and "had --limit 2): score them with --limit 2" in result.stderr, result.stderr
    not_a_mar = run_module(["bench.load_test", "--model", gt, "--clients", "1", "--seconds", "1", "--out",
                            str(tmp_path / "load.json")], check=False, timeout=120)
    assert not_a_mar.returncode == 2 and "is not a .mar archive" in not_a_mar.stderr, not_a_mar.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_text("not a photo")
    (broken / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}], "annotations": [],
        "categories": [{"id": 1, "name": "acne"}]}))
    unreadable = run_module(["bench.colour_variety", "--gt", str(broken / "annotations.json"), "--out",
                             str(tmp_path / "c.json")], check=False, timeout=120)
    assert unreadable.returncode == 2 and "a.jpg" in unreadable.stderr and "Traceback" not in unreadable.stderr


def test_nested_suppression_drops_a_box_inside_another_of_its_type():
    """Intersection over the smaller box: a box inside a surer one goes, and so does a box holding a
    surer one; neighbours, and boxes of another type, stay. IoU would keep them all (0.16 here)."""
    from bench.nms_iou import nested_suppression

    def box(x, y, w, h, score, category=1):
        return {"image_id": 1, "category_id": category, "bbox": [x, y, w, h], "score": score}

    large, inside, holder, neighbour = box(0, 0, 50, 50, 0.9), box(10, 10, 20, 20, 0.5), box(100, 0, 50, 50, 0.3), \
        box(60, 0, 30, 30, 0.4)
    surer_inside, other_type = box(110, 10, 20, 20, 0.8), box(12, 12, 20, 20, 0.7, category=2)
    kept = nested_suppression([large, inside, holder, neighbour, surer_inside, other_type], 0.8)
    assert sorted(kept, key=lambda b: b["score"]) == [neighbour, other_type, surer_inside, large]


def test_large_photos_enlarges_photos_with_their_boxes(synthetic_data, tmp_path):
    from PIL import Image

    from bench.large_photos import large_ground_truth
    from train.evaluate import load_ground_truth, sample_ground_truth

    source = synthetic_data / "valid"
    gt = sample_ground_truth(load_ground_truth(source / "annotations.json")[0], 2)
    large = read_json(large_ground_truth(gt, source, 2.5, "enlarge", tmp_path))
    for small, big in zip(gt["images"], large["images"]):
        with Image.open(tmp_path / big["file_name"]) as photo:
            assert photo.size == (800, 800) == (big["width"], big["height"]) == (small["width"] * 2.5, small["height"] * 2.5)
    assert len(large["annotations"]) == len(gt["annotations"]) > 0
    for small, big in zip(gt["annotations"], large["annotations"]):
        assert big["bbox"] == [v * 2.5 for v in small["bbox"]] and big["image_id"] == small["image_id"]


def test_large_photos_canvas_keeps_the_photo_and_its_boxes_at_their_size(synthetic_data, tmp_path):
    import numpy as np
    from PIL import Image

    from bench.large_photos import large_ground_truth
    from train.evaluate import load_ground_truth, sample_ground_truth

    source = synthetic_data / "valid"
    gt = sample_ground_truth(load_ground_truth(source / "annotations.json")[0], 2)
    large = read_json(large_ground_truth(gt, source, 3, "canvas", tmp_path))
    for small, big in zip(gt["images"], large["images"]):
        with Image.open(source / small["file_name"]) as original, Image.open(tmp_path / big["file_name"]) as canvas:
            assert canvas.size == (960, 960)
            inside = np.asarray(canvas.convert("RGB").crop((320, 320, 640, 640)), dtype=float)
            # The original, in the middle (JPEG changes a few levels); grey around it.
            assert np.abs(inside - np.asarray(original.convert("RGB"), dtype=float)).mean() < 6
            assert np.abs(np.asarray(canvas.convert("RGB").crop((0, 0, 300, 300)), dtype=float) - 128).max() <= 2
    for small, big in zip(gt["annotations"], large["annotations"]):
        x, y, w, h = small["bbox"]
        assert big["bbox"] == [x + 320, y + 320, w, h]


def test_large_photos_compares_the_whole_photo_with_slices(smoke_mar, synthetic_data, tmp_path):
    out = tmp_path / "large.json"
    result = run_module(["bench.large_photos", "--model", str(smoke_mar), "--gt",
                         str(synthetic_data / "valid" / "annotations.json"), "--limit", "2", "--scale", "2",
                         "--slice-sizes", "256,1280", "--out", str(out)], timeout=600)
    report = read_json(out)
    assert report["images"] == 2 and report["large_side"] == 640 and report["layout"] == "enlarge"
    rows = report["rows"]
    # A slice larger than the enlarged photo would be the whole photo again: no row for 1280.
    assert [(row["setting"], row["slice_size"], row["framing"]) for row in rows] == [
        ("whole photo", None, "none"), ("whole photo, cropped to the face", None, "face"),
        ("slices of 256 + whole photo", 256, "none")]
    size = report["input_size"]
    assert rows[0]["lesion_scale"] == round(size / 320, 2) and rows[2]["lesion_scale"] == round(size * 2 / 256, 2)
    assert rows[1]["lesion_scale"] is None  # the crop's size depends on the face found
    assert all(0.0 <= row["mAP50"] <= 1.0 and row["count_mae"] >= 0 for row in rows)
    assert "| slices of 256 + whole photo |" in result.stdout
    # Which model (a path may since hold another archive) and machine the timings are of.
    context = report["context"]
    assert context["model"]["name"] and len(context["model"]["weights_sha256"]) >= 12
    assert context["machine"]["cpus"] >= 1 and len(context["machine"]["load_average"]) == 3


def test_test_time_augmentation_rows_fuse_or_pool_their_passes(smoke_mar, synthetic_data, tmp_path):
    out = tmp_path / "tta.json"
    result = run_module(["bench.test_time_augmentation", "--model", str(smoke_mar), "--gt",
                         str(synthetic_data / "valid" / "annotations.json"), "--limit", "2", "--sizes", "256,320",
                         "--out", str(out)])
    rows = {row["passes"]: row for row in read_json(out)["rows"]}
    # One row per size, the served size (the smoke config's 320) mirrored, and both sizes together.
    assert list(rows) == ["256", "320", "320 + mirrored", "256 + 320", "256 + 320, each mirrored too",
                          "256 + 320, each mirrored too (NMS instead of fusion)"]
    assert [rows[name]["count"] for name in rows] == [1, 1, 2, 2, 4, 4]
    assert rows["256 + 320, each mirrored too"]["merge"] == "fuse"
    assert all(0 <= row["mAP50"] <= 1 and row["s_per_photo"] > 0 for row in rows.values())
    # A row's time is the sum of its passes' times.
    assert rows["256 + 320, each mirrored too"]["s_per_photo"] > rows["320"]["s_per_photo"]
    assert "| 256 + 320, each mirrored too |" in result.stdout


def test_example_photos_are_the_median_error_photo_of_each_grade(smoke_training, tmp_path):
    from bench.example_photos import typical_photos

    gt = {"images": [{"id": i, "file_name": f"{i}.jpg", "grade": 1} for i in range(1, 4)],
          "annotations": [{"image_id": 1}, {"image_id": 2}, {"image_id": 2}, {"image_id": 3}]}
    predictions = [{"image_id": 1, "score": 0.9}, {"image_id": 3, "score": 0.9}, {"image_id": 3, "score": 0.9},
                   {"image_id": 3, "score": 0.9}, {"image_id": 3, "score": 0.1}]
    # errors at 0.5: image 1 off by 0, image 2 by 2, image 3 by 2: the lower median is 2, image 2 first
    assert typical_photos(gt, predictions, 0.5) == {1: ("2.jpg", 2, 0, 2)}
    result = run_module(["bench.example_photos", "--predictions",
                         str(smoke_training["work_dir"] / "eval" / "predictions.json"), "--gt",
                         str(smoke_training["data"] / "valid" / "annotations.json"), "--threshold", "0.3",
                         "--out", str(tmp_path / "examples.json")], timeout=300)
    assert result.stdout.startswith("| grade | photo |") and result.stdout.count("\n") >= 3
    # The JSON holds the rows the table prints.
    for row in read_json(tmp_path / "examples.json")["photos"]:
        assert (f"| {row['grade']} | {row['photo']} | {row['lesions_marked']} | {row['lesions_found']} | "
                f"{row['median_count_error_of_the_grade']} |") in result.stdout
    # Detections made on another split are refused, also where their ids lie within its range: the
    # evaluation report beside them names the ground truth they were made on.
    other_split = smoke_training["data"] / "train" / "annotations.json"
    for module, out in (("bench.example_photos", []), ("bench.nms_iou", ["--out", str(tmp_path / "x.json")])):
        result = run_module([module, "--predictions", str(smoke_training["work_dir"] / "eval" / "predictions.json"),
                             "--gt", str(other_split), "--threshold", "0.3", *out], check=False, timeout=300)
        assert result.returncode == 2 and f"not on {other_split}" in result.stderr, result.stderr[-1500:]


def test_photo_conditions_rows_say_what_the_answers_warned_of(smoke_mar, synthetic_data, tmp_path):
    out = tmp_path / "conditions.json"
    result = run_module(["bench.photo_conditions", "--model", str(smoke_mar), "--gt",
                         str(synthetic_data / "valid" / "annotations.json"), "--limit", "2",
                         "--conditions", "as it is,grey,light at 30%,small: 64 px", "--out", str(out)], timeout=600)
    report = read_json(out)
    rows = {row["condition"]: row for row in report["rows"]}
    assert list(rows) == ["as it is", "grey", "light at 30%", "small: 64 px"] and report["images"] == 2
    assert rows["grey"]["warnings"] == {"no_colour": 2} and rows["grey"]["warned"] == 1.0
    assert rows["light at 30%"]["warnings"] == {"dark": 2}
    assert rows["small: 64 px"]["warnings"] == {"small_photo": 2}
    assert all(0.0 <= row["mAP50"] <= 1.0 and row["found"] >= 0 for row in rows.values())
    assert "| small: 64 px |" in result.stdout and report["brighten_dark"] is True  # the smoke model's own setting
    darkest = run_module(["bench.photo_conditions", "--model", str(smoke_mar), "--gt",
                          str(synthetic_data / "valid" / "annotations.json"), "--limit", "1", "--darkest",
                          "--conditions", "as it is", "--brighten-dark", "false", "--out", str(out), "--overwrite"],
                         timeout=600)
    report = read_json(out)
    assert (report["sample"], report["images"], report["brighten_dark"]) == ("the darkest", 1, False)
    assert "dark photos not brightened" in darkest.stdout
    refused = run_module(["bench.photo_conditions", "--model", str(smoke_mar), "--gt",
                          str(synthetic_data / "valid" / "annotations.json"), "--conditions", "purple",
                          "--out", str(tmp_path / "x.json")], check=False, timeout=120)
    assert refused.returncode == 2 and "--conditions: unknown ['purple']" in refused.stderr


def test_every_benchmark_prints_its_help_run_by_path_or_as_a_module():
    """Six of them ended in "No module named 'bench'" when run as `python bench/x.py`, and the photo
    conditions' help in a formatting error (a % in it)."""
    for script in sorted((REPO / "bench").glob("*.py")):
        if script.name == "arguments.py":  # shared argument types, not a benchmark
            continue
        for command in ([sys.executable, str(script), "--help"],
                        [sys.executable, "-m", f"bench.{script.stem}", "--help"]):
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0 and "usage:" in result.stdout, (command, result.stderr[-1000:])


def fixture_ground_truth(folder, count: int):
    """A ground truth of the first `count` fixture photos, without boxes: for checks no model runs in."""
    images = []
    for number, photo in enumerate(ACNE04_PHOTOS[:count], 1):
        shutil.copy(photo, folder / photo.name)
        images.append({"id": number, "file_name": photo.name, "width": 640, "height": 640})
    gt = folder / "annotations.json"
    gt.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "acne"}]}))
    return gt


def test_colour_variety_tells_grey_copies_from_the_photos(tmp_path):
    gt = fixture_ground_truth(tmp_path, 3)
    out = tmp_path / "variety.json"
    result = run_module(["bench.colour_variety", "--gt", str(gt), "--qualities", "75", "--out", str(out)], timeout=300)
    rows = {row["copy"]: row for row in read_json(out)["rows"]}
    assert rows["grey"]["judged_without_colour"] == 1.0 and rows["as it is"]["judged_without_colour"] == 0.0
    assert rows["sepia (the apps' matrix)"]["judged_without_colour"] == 1.0  # at quality 75 too
    assert rows["as it is"]["lowest"] > rows["grey"]["highest"] and "| grey | 75 |" in result.stdout


def test_face_framing_crops_faces_on_wide_canvases_and_never_a_grey_photo(tmp_path):
    gt = fixture_ground_truth(tmp_path, 2)
    out = tmp_path / "framing.json"
    result = run_module(["bench.face_framing", "--gt", str(gt), "--times", "1,5", "--out", str(out)], timeout=300)
    rows = {(row["canvas_times"], row["fill"], row["grey_scale"]): row["cropped"] for row in read_json(out)["rows"]}
    assert rows[(1, "none", False)] == 0 and rows[(5, "light (235)", False)] >= 1  # a face 4% of the photo
    assert all(cropped == 0 for (_, _, grey), cropped in rows.items() if grey)
    assert "| 5 | light (235) | colour |" in result.stdout
