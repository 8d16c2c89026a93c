"""A real TorchServe with the smoke .mar: schema, counts, boxes, parity with in-process
inference, options, batching, and every kind of bad input (each leaves the worker up)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import (ACNE04_PHOTOS, REPO, ended_by_ctrl_c, read_json, run_module, start_torchserve,
                            stop_torchserve, worker_state)
from tests.synthetic_data import make_image, png_header_only

LOW = "0.05"  # the smoke model is barely trained: a low threshold gives it detections to compare


def post(server, body, headers=None, files=None, data=None):
    url = f"{server['inference']}/predictions/trouble"
    if files is not None:
        return requests.post(url, files=files, data=data, headers=headers or {}, timeout=300)
    return requests.post(url, data=body, headers=headers or {}, timeout=300)


def jpeg_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **save_args)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def three_type_photo():
    image, _, _ = make_image(size=(480, 360), n_lesions=12, seed=3)
    return jpeg_bytes(image)


def check_schema(body, width, height, classes):
    assert set(body) >= {"model", "image", "detections", "counts", "total", "severity", "settings", "timings_ms"}
    assert body["model"]["name"] == "trouble" and body["model"]["version"] == "1.0"
    assert body["model"]["classes"] == classes
    assert body["image"]["width"] == width and body["image"]["height"] == height
    assert set(body["counts"]) == set(classes)
    per_type = {name: 0 for name in classes}
    for detection in body["detections"]:
        assert detection["type"] in classes
        assert 0.0 <= detection["score"] <= 1.0
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, detection
        per_type[detection["type"]] += 1
    assert body["counts"] == per_type
    assert body["total"] == len(body["detections"])
    assert body["severity"]["lesion_count"] == body["total"]
    assert body["severity"]["grade"] in (0, 1, 2, 3)
    assert set(body["timings_ms"]) == {"decode", "inference", "postprocess", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["inference"] > 0


@pytest.mark.parametrize("photo", ACNE04_PHOTOS[:2], ids=lambda p: p.name[:10])
def test_real_photo_schema_and_parity(torchserve, detector, photo):
    data = photo.read_bytes()
    reply = post(torchserve, data, {"X-Trouble-Threshold": LOW})
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")  # it had none
    body = reply.json()
    check_schema(body, 640, 640, detector.classes)
    assert body["total"] > 0, "the smoke model should find something at a 0.05 threshold"
    local = detector.predict(data, score_threshold=LOW)
    assert [d["type"] for d in body["detections"]] == [d["type"] for d in local["detections"]]
    np.testing.assert_allclose([d["box"] for d in body["detections"]], [d["box"] for d in local["detections"]],
                               atol=0.5)
    np.testing.assert_allclose([d["score"] for d in body["detections"]],
                               [d["score"] for d in local["detections"]], atol=1e-3)


def test_three_type_photo_multipart_and_options(torchserve, detector, three_type_photo):
    reply = post(torchserve, None, files={"data": ("face.jpg", three_type_photo, "image/jpeg")},
                 data={"threshold": LOW, "sliced": "true", "slice_size": "256", "framing": "face"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    check_schema(body, 480, 360, detector.classes)
    assert body["settings"]["sliced"] is True and body["settings"]["slice_size"] == 256
    assert body["settings"]["framing"] == "face" and body["settings"]["face_crop"] is None  # no face in it
    assert set(body["settings"]["score_thresholds"].values()) == {0.05}
    # A higher threshold can only remove detections.
    strict = post(torchserve, three_type_photo, {"X-Trouble-Threshold": "0.5"}).json()
    assert strict["total"] <= body["total"]
    assert all(d["score"] >= 0.5 for d in strict["detections"])
    # Test-time augmentation, as a header: the model's two sizes, each mirrored too.
    augmented = post(torchserve, three_type_photo, {"X-Trouble-TTA": "true", "X-Trouble-Threshold": LOW})
    assert augmented.status_code == 200, augmented.text
    assert augmented.json()["settings"]["passes"] == 4 and body["settings"]["passes"] == 1
    refused = post(torchserve, three_type_photo, {"X-Trouble-TTA": "maybe"})
    assert refused.status_code == 400 and "tta must be true or false" in refused.json()["error"]
    assert "(sent as the header x-trouble-tta)" in refused.json()["error"]  # not the form field a client never sent


def test_default_thresholds_come_from_the_model(torchserve, detector, three_type_photo):
    body = post(torchserve, three_type_photo).json()
    assert body["settings"]["score_thresholds"] == detector.thresholds
    for detection in body["detections"]:
        assert detection["score"] >= detector.thresholds[detection["type"]]


def test_batch_of_concurrent_requests(torchserve, detector):
    photos = [p.read_bytes() for p in ACNE04_PHOTOS]
    with ThreadPoolExecutor(len(photos)) as pool:
        replies = list(pool.map(lambda data: post(torchserve, data, {"X-Trouble-Threshold": LOW}), photos))
    for data, reply in zip(photos, replies):
        assert reply.status_code == 200
        assert reply.json()["counts"] == detector.predict(data, score_threshold=LOW)["counts"]


def test_image_modes_and_exif(torchserve, detector):
    # A real photo: the synthetic ones are one flat skin colour, whose colour follows brightness as a
    # sepia photo's does, and a JPEG of one is judged a photo without colour.
    base = Image.open(ACNE04_PHOTOS[0]).convert("RGB").resize((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display: width and height swap
    cases = {
        "grayscale": png_bytes(base.convert("L")),
        "rgba": png_bytes(base.convert("RGBA")),
        "palette": png_bytes(base.convert("P")),
        "16-bit": png_bytes(Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257))),
        "webp": (lambda b: (base.save(b, "WEBP"), b.getvalue())[1])(io.BytesIO()),
        "exif-rotated": jpeg_bytes(base, exif=exif),
        "heic-rotated": (lambda b: (base.save(b, "HEIF", exif=exif.tobytes()), b.getvalue())[1])(io.BytesIO()),
    }
    for name, data in cases.items():
        reply = post(torchserve, data)
        assert reply.status_code == 200, (name, reply.text)
        size = (reply.json()["image"]["width"], reply.json()["image"]["height"])
        assert size == ((200, 300) if name.endswith("rotated") else (300, 200)), name
        # The API answer says what the app says: a photo without colour gets a count likely too low.
        no_colour = [w for w in reply.json()["warnings"] if w["code"] == "no_colour"]
        assert bool(no_colour) == (name in ("grayscale", "16-bit")), (name, reply.json()["warnings"])


def webp_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP")
    return buffer.getvalue()


def animated_bytes(image_format: str) -> bytes:
    """Two ACNE04 photos as the frames of an animated WebP or PNG."""
    frames = [Image.open(photo).convert("RGB") for photo in ACNE04_PHOTOS[:2]]
    buffer = io.BytesIO()
    frames[0].save(buffer, image_format, save_all=True, append_images=frames[1:], duration=200)
    return buffer.getvalue()


BAD_INPUTS = {
    "empty body": (b"", {}, 400, "empty_body"),
    "text bytes": (b"this is not a photo", {}, 415, "not_an_image"),
    "truncated jpeg": (ACNE04_PHOTOS[0].read_bytes()[:4000], {}, 400, "corrupt_image"),
    "zero size png": (png_header_only(0, 0), {}, 400, "corrupt_image"),
    "truncated png": (png_bytes(Image.open(ACNE04_PHOTOS[0]))[:50000], {}, 400, "corrupt_image"),
    "truncated webp": (webp_bytes(Image.open(ACNE04_PHOTOS[0]))[:300], {}, 400, "corrupt_image"),
    "json body": (b'{"photo": "none"}', {"Content-Type": "application/json"}, 415, "not_an_image"),
    "svg after a byte-order mark": (b'\xef\xbb\xbf<svg xmlns="http://www.w3.org/2000/svg"/>', {}, 415,
                                    "unsupported_format"),
    "1xN image": (png_bytes(Image.new("RGB", (1, 300))), {}, 400, "too_small"),
    "a 20000x16 strip": (png_bytes(Image.new("RGB", (20000, 16))), {}, 400, "extreme_aspect_ratio"),
    "svg": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {}, 415,
            "unsupported_format"),
    "pdf": (b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF", {}, 415, "unsupported_format"),
    "animated webp": (animated_bytes("WEBP"), {}, 415, "unsupported_format"),  # analysed on its first frame
    "animated png": (animated_bytes("PNG"), {}, 415, "unsupported_format"),
    "decompression bomb": (png_header_only(40000, 40000), {}, 413, "too_many_pixels"),
    "threshold above 1": (None, {"X-Trouble-Threshold": "2"}, 400, "bad_parameter"),
    "threshold not a number": (None, {"X-Trouble-Threshold": "high"}, 400, "bad_parameter"),
    "slice size too small": (None, {"X-Trouble-Slice-Size": "8"}, 400, "bad_parameter"),
    "sliced not a boolean": (None, {"X-Trouble-Sliced": "maybe"}, 400, "bad_parameter"),
    "unknown framing": (None, {"X-Trouble-Framing": "tight"}, 400, "bad_parameter"),
    "misspelt option header": (None, {"X-Trouble-Treshold": "0.9"}, 400, "bad_parameter"),
    # TorchServe decodes a JSON body: a number is neither bytes nor text (it was a 500 "model failed")
    "json number": (b"1.5", {"Content-Type": "application/json"}, 415, "not_an_image"),
    "json negative number": (b"-1", {"Content-Type": "application/json"}, 415, "not_an_image"),
    "json whole number": (b"123", {"Content-Type": "application/json"}, 415, "not_an_image"),
    # 1600x1200 in 128 px slices with test-time augmentation: 772 model passes (refused before any runs)
    "too many model passes": (jpeg_bytes(make_image(size=(1600, 1200), n_lesions=5, seed=7)[0]),
                              {"X-Trouble-Sliced": "true", "X-Trouble-Slice-Size": "128", "X-Trouble-TTA": "true"},
                              400, "too_much_work"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_4xx_and_the_worker_stays_up(torchserve, case):
    body, headers, status, code = BAD_INPUTS[case]
    before = worker_state(torchserve)
    reply = post(torchserve, ACNE04_PHOTOS[0].read_bytes() if body is None else body, headers)
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()
    assert error["code"] == code
    assert len(error["error"]) > 20 and "Traceback" not in error["error"]
    # Same worker process, still READY: the bad request crashed nothing.
    assert worker_state(torchserve) == before
    assert all(status == "READY" for _, status in before)
    assert post(torchserve, ACNE04_PHOTOS[1].read_bytes()).status_code == 200


def test_multipart_finds_the_photo_among_fields_and_refuses_unknown_ones(torchserve):
    photo = ACNE04_PHOTOS[0].read_bytes()
    # The photo field may have any name, also after a text field; options are form fields.
    assert post(torchserve, None, files={"upload": ("p.jpg", photo)}, data={"threshold": LOW}).status_code == 200
    for fields in ({"note": "hello"}, {"treshold": "0.9"}):  # a note, a misspelt option: never ignored in silence
        reply = post(torchserve, None, files={"data": ("p.jpg", photo)}, data=fields)
        assert reply.status_code == 400 and reply.json()["code"] == "bad_parameter", reply.text
        assert next(iter(fields)) in reply.json()["error"] and "threshold" in reply.json()["error"]
    # Two photos in one request: named as such, not as an unknown field.
    reply = post(torchserve, None, files={"a": ("a.jpg", photo), "b": ("b.jpg", ACNE04_PHOTOS[1].read_bytes())})
    assert reply.status_code == 400 and reply.json()["code"] == "bad_parameter", reply.text
    assert "holds 2 photos (fields a, b): send one photo per request" in reply.json()["error"]
    # One option as a form field and as a header: the same value is fine; two values are refused, not one
    # of them picked in silence.
    for header, status in (("0.90", 200), ("0.01", 400)):  # 0.90 is 0.9 spelt otherwise
        reply = post(torchserve, None, {"X-Trouble-Threshold": header}, files={"data": ("p.jpg", photo)},
                     data={"threshold": "0.9"})
        assert reply.status_code == status, reply.text
    assert "given twice" in reply.json()["error"] and reply.json()["code"] == "bad_parameter"


def test_prometheus_metrics_are_on(torchserve):
    reply = requests.get(f"{torchserve['metrics']}/metrics", timeout=10)
    assert reply.status_code == 200
    assert "ts_inference_requests_total" in reply.text


def test_model_registration_api_is_off(torchserve):
    reply = requests.post(f"{torchserve['management']}/models", params={"url": "other.mar"}, timeout=10)
    assert reply.status_code in (403, 405), reply.text


def test_batch_cli_through_torchserve_and_in_process_agree(torchserve, smoke_mar, tmp_path):
    """`handler.predict_folder` on a folder a clinic might have: JPEGs, an iPhone HEIC, a broken
    file that sorts first (reported and skipped), a note (not a photo: ignored) and a subfolder of
    photos (named, not analysed)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in ACNE04_PHOTOS[:2]:
        shutil.copy(photo, photos / photo.name)
    # Taken on a known day (EXIF DateTimeOriginal): its row says when.
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2026:10:01 14:22:05"
    Image.open(ACNE04_PHOTOS[0]).save(photos / ACNE04_PHOTOS[0].name, quality=95, exif=exif)
    # Grey-scale: its row warns that the count is likely too low (no colour).
    Image.open(ACNE04_PHOTOS[2]).convert("L").convert("RGB").save(photos / "IMG_0003.HEIC", "HEIF", quality=95)
    (photos / "0_broken.jpg").write_bytes(ACNE04_PHOTOS[0].read_bytes()[:3000])
    (photos / "0_empty.jpg").write_bytes(b"")  # a copy that did not finish: named as empty, not "no image sent"
    (photos / "notes.txt").write_text("not a photo")
    (photos / "patient_b").mkdir()  # a subfolder's photos are named, not analysed
    shutil.copy(ACNE04_PHOTOS[0], photos / "patient_b" / ACNE04_PHOTOS[0].name)
    rows = {}
    for name, source in (("server", ["--server", torchserve["inference"]]), ("model", ["--model", str(smoke_mar)])):
        out = tmp_path / name
        result = run_module(["handler.predict_folder", str(photos), *source, "--threshold", LOW, "--framing", "face",
                             "--out", str(out / "results.json"), "--csv", str(out / "counts.csv"), "--annotated",
                             str(out / "annotated")])
        assert "2 photos skipped" in result.stdout
        assert "note: 1 files left out, not named as photos" in result.stderr and "notes.txt" in result.stderr
        assert "note: photos in subfolders are not analysed (run the command on each folder): patient_b/ (1)" \
            in result.stderr
        with (out / "counts.csv").open(newline="") as f:
            rows[name] = list(csv.DictReader(f))
        results = read_json(out / "results.json")
        assert len(results["responses"]) == 5 and len(results["images"]) == 5
        assert [c["name"] for c in results["categories"]] == ["comedone", "papule", "pustule"]
        # --framing reaches the model in both modes (the smoke model's own setting is "none")
        assert {r["settings"]["framing"] for r in results["responses"] if "error" not in r} == {"face"}
        assert sorted(p.name for p in (out / "annotated").iterdir()) == sorted(
            f"{p.stem}.png" for p in photos.iterdir() if p.is_file()
            and p.name not in ("0_broken.jpg", "0_empty.jpg", "notes.txt"))
    (tmp_path / "photos_only_in_subfolders" / "patient_c").mkdir(parents=True)
    shutil.copy(ACNE04_PHOTOS[0], tmp_path / "photos_only_in_subfolders" / "patient_c" / "a.jpg")
    only_subfolders = run_module(["handler.predict_folder", str(tmp_path / "photos_only_in_subfolders"), "--model",
                                  str(smoke_mar), "--out", str(tmp_path / "none.json")], check=False)
    assert only_subfolders.returncode == 2 and "photos_only_in_subfolders itself, only in its subfolders" in \
        only_subfolders.stderr, only_subfolders.stderr[-1000:]

    assert [row["file_name"] for row in rows["server"]] == sorted(p.name for p in photos.iterdir())[:5]
    broken, empty = rows["server"][:2]
    assert "data ends early: 9" in broken["error"] and broken["total"] == ""
    assert empty["error"].startswith("the file is empty (0 bytes)") and empty["total"] == ""
    for server_row, model_row in zip(rows["server"], rows["model"]):
        # When each photo was analysed (for follow-up photos), to the second: this run's, local time.
        times = [row.pop("analysed_at") for row in (server_row, model_row)]
        assert server_row["taken_at"] == ("2026-10-01T14:22:05" if server_row["file_name"] == ACNE04_PHOTOS[0].name
                                          else "")
        if server_row["error"]:
            assert times == ["", ""]
        else:
            assert all(abs(datetime.now(timezone.utc) - datetime.fromisoformat(t)) < timedelta(minutes=30)
                       for t in times), times
        assert server_row == model_row
        # --threshold is not the model's own: its validation figures give no typical range, and the row says
        # which thresholds and model made it
        assert server_row["typical_count_low"] == server_row["typical_count_high"] == ""
        if not server_row["error"]:
            assert server_row["score_thresholds"] == "; ".join(f"{name} {float(LOW):g}" for name in
                                                                ("comedone", "papule", "pustule"))
            assert server_row["model"].startswith("trouble ") and "(weights " in server_row["model"]
        if not server_row["error"]:
            counts = [int(server_row[name]) for name in ("comedone", "papule", "pustule")]
            assert sum(counts) == int(server_row["total"]) > 0
            assert server_row["grade_name"] in ("mild", "moderate", "severe", "very severe")
    # (count_capped aside: at this low threshold the smoke model may keep its limit of boxes)
    photo_warnings = {row["file_name"]: [code for code in row["warnings"].split("; ") if code != "count_capped"]
                      for row in rows["server"] if row["warnings"]}
    assert {name: codes for name, codes in photo_warnings.items() if codes} == {"IMG_0003.HEIC": ["no_colour"]}


def test_the_csv_gives_a_typical_range_only_where_it_is_known(tmp_path):
    """Answers of archives made before answers carried a typical range are given one from their
    validation figures; not where they carry no warnings either (a range needs a photo without any)."""
    from handler.predict_folder import write_counts_csv
    from trouble.severity import describe_grade

    validation = {"data": "data/acne04/valid/annotations.json", "images": 283, "mAP50": 0.31, "count_mae": 4.2,
                  "by_found_grade": [None, {"images": 12, "mae": 3.3, "marked_minus_found": [-2, 6], "labels": None},
                                     None, None]}
    response = {"file_name": "a.jpg", "model": {"name": "trouble", "version": "1.0", "classes": ["acne"],
                                                "score_thresholds": {"acne": 0.23}, "validation": validation},
                "image": {}, "counts": {"acne": 7}, "total": 7, "severity": describe_grade(7),
                "settings": {"score_thresholds": {"acne": 0.23}, "sliced": False, "slices": 0, "tta": False},
                "analysed_at": "2026-11-28T09:00:00+00:00"}
    sliced = {**response, "warnings": [], "file_name": "=HYPERLINK(1).jpg",
              "settings": {**response["settings"], "sliced": True, "slices": 12, "tta": True, "passes": 4,
                           "framing": "face", "face_crop": [0, 0, 10, 10]}}
    not_utf8 = {"file_name": "bad\udcff.jpg", "error": "not a photo", "code": "not_an_image"}
    small = {**response, "warnings": [], "settings": {**response["settings"], "sliced": True, "slices": 0}}
    write_counts_csv(tmp_path / "counts.csv", ["acne"], [{**response, "warnings": []}, response, sliced, not_utf8,
                                                         small])
    with (tmp_path / "counts.csv").open(newline="", encoding="utf-8") as f:  # UTF-8 text, whatever the names
        with_warnings, older, sliced_row, not_utf8_row, small_row = list(csv.DictReader(f))
    assert small_row["sliced"] == "no (the photo is no larger than a slice)"  # it had read "yes (0 slices)"
    assert (with_warnings["typical_count_low"], with_warnings["typical_count_high"]) == ("5", "13")
    # Which model and thresholds made the row (an archive without a weights hash: its name and version)
    assert (with_warnings["model"], with_warnings["score_thresholds"]) == ("trouble 1.0", "acne 0.23")
    assert older["warnings"] == "not given (an archive older than warnings)" and older["typical_count_low"] == ""
    # How each photo was run, which changes its count: a sliced, augmented run is no validated one.
    assert [(row["sliced"], row["tta"], row["framing"], row["as_validated"]) for row in (with_warnings, sliced_row)] \
        == [("no", "no", "", "yes"), ("yes (12 slices)", "yes (4 passes)", "face (cropped to it)", "no")]
    # A name a spreadsheet would run as a formula, and one that is not UTF-8 (from an audit).
    assert sliced_row["file_name"] == "'=HYPERLINK(1).jpg" and not_utf8_row["file_name"] == "bad\\udcff.jpg"


def test_no_two_photos_get_one_drawing_name():
    """a.jpg and a.png would both be drawn as a.png, and a.jpg's fallback a.jpg.png is a photo's own
    drawing name where a photo is named a.jpg.png: one drawing replaced another without a word."""
    from trouble.batch import annotated_names

    paths = [Path(name) for name in ("a.jpg", "a.jpg.png", "a.png", "b.jpg", "c.jpeg", "c.JPEG", "D.jpg", "d.png")]
    names = annotated_names(paths)
    assert len(set(names.values())) == len(paths), names
    assert names[Path("b.jpg")] == "b.png" and names[Path("a.jpg")] == "a.jpg.png"
    assert names[Path("a.jpg.png")] == "a.jpg.png.png"
    # D.png and d.png are one file on a disk that ignores case (macOS, Windows)
    assert names[Path("D.jpg")] == "D.jpg.png" and names[Path("d.png")] == "d.png.png"


def test_batch_cli_stops_at_a_bad_option_and_says_when_nothing_was_analysed(torchserve, tmp_path):
    # Run as a script too (`python handler/predict_folder.py`), from another folder: no ModuleNotFoundError.
    as_script = subprocess.run([sys.executable, str(REPO / "handler" / "predict_folder.py"), "--help"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert as_script.returncode == 0 and "--slice-size" in as_script.stdout, as_script.stderr[-1000:]
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(ACNE04_PHOTOS[0].read_bytes())
    command = ["handler.predict_folder", str(photos), "--server", torchserve["inference"], "--out",
               str(tmp_path / "results.json")]
    (tmp_path / "not_a_model").mkdir()
    no_model = run_module([*command[:2], "--model", str(tmp_path / "not_a_model"), "--out", str(tmp_path / "r.json")],
                          check=False)
    assert no_model.returncode == 2 and "is not a model folder: it has no model-config.yaml" in no_model.stderr
    photo_as_out = run_module([*command[:4], "--out", str(photos / "a.jpg"), "--overwrite"], check=False)
    assert photo_as_out.returncode == 2 and "is one of the photos" in photo_as_out.stderr  # never replaced by JSON
    bad_option = run_module([*command, "--threshold", "2"], check=False)
    assert bad_option.returncode == 2 and "threshold must be in [0, 1]" in bad_option.stderr
    assert "Traceback" not in bad_option.stderr and not (tmp_path / "results.json").exists()

    (photos / "a.jpg").write_bytes(b"not a photo at all")
    nothing = run_module(command, check=False)
    assert nothing.returncode == 1 and "none of the 1 photos could be analysed" in nothing.stderr
    assert "1/1 photos" in nothing.stdout  # the progress line counts a skipped last photo too
    assert "not a readable image" in (tmp_path / "results.json").read_text()  # the reason is kept


def test_with_token_authorisation_make_serve_waits_and_the_batch_cli_names_the_missing_key(smoke_mar, tmp_path):
    """config.properties says how to serve other machines: token authorisation back on. Then the
    readiness check of `make serve` reads the management key TorchServe wrote, and the batch CLI
    stops at once without the inference key, naming TROUBLE_API_TOKEN."""
    server = start_torchserve(smoke_mar.parent, tmp_path / "ts", mar_name=smoke_mar.name,
                              extra_config="disable_token_authorization=false")
    try:
        ready = subprocess.run([sys.executable, "-m", "handler.wait_ready"], cwd=server["workdir"],
                               env={**server["env"], "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                               timeout=240)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert f"POST photos to {server['inference']}/predictions/trouble" in ready.stdout
        photos = tmp_path / "photos"
        photos.mkdir()
        for photo in ACNE04_PHOTOS[:2]:
            shutil.copy(photo, photos / photo.name)
        command = ["handler.predict_folder", str(photos), "--server", server["inference"], "--out",
                   str(tmp_path / "results.json")]
        refused = run_module(command, check=False, env={"TROUBLE_API_TOKEN": ""})
        assert refused.returncode == 2 and "wants a key, and none was sent: set TROUBLE_API_TOKEN" in refused.stderr, \
            refused.stderr
        assert "Traceback" not in refused.stderr and refused.stderr.count("skipped") == 0
        key = json.loads((server["workdir"] / "key_file.json").read_text())["inference"]["key"]
        run_module(command, env={"TROUBLE_API_TOKEN": key})
        assert all("error" not in r for r in read_json(tmp_path / "results.json")["responses"])
        # The app's client: TorchServe answers a missing or wrong key with 400 (not 401), /ping included;
        # the page must say "the key", not "not answering" or a bare message.
        sys.path.insert(0, str(REPO / "space"))
        from backends import AnalysisError, ServerBackend

        assert ServerBackend(server["inference"]).health() == "refuses the token"
        assert ServerBackend(server["inference"], token=key).health() == "up"
        with pytest.raises(AnalysisError, match="set TROUBLE_API_TOKEN to the inference key"):
            ServerBackend(server["inference"], token="wrong").predict(ACNE04_PHOTOS[0].read_bytes())

        for number in range(100):
            shutil.copy(ACNE04_PHOTOS[number % 2], photos / f"photo{number:03d}.jpg")

        def start_run(token):
            run = subprocess.Popen([sys.executable, "-m", *command, "--overwrite"], cwd=REPO, text=True,
                                   env={**os.environ, "TROUBLE_API_TOKEN": token}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
            for line in run.stdout:
                if "20/102 photos" in line:
                    return run
            return run

        # The key changes partway (keys expire after 60 minutes; here a new one is made): what was
        # answered is written, not thrown away with the run.
        run = start_run(key)
        keys = json.loads((server["workdir"] / "key_file.json").read_text())
        requests.get(f"{server['management']}/token?type=inference",
                     headers={"Authorization": f"Bearer {keys['API']['key']}"}, timeout=10)
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 1 and "the server refused the request after" in stderr, stderr[-1500:]
        # Over the sheet of the run before (--overwrite), a run stopped early writes beside it.
        assert len(read_json(tmp_path / "results.json")["responses"]) == 2
        responses = read_json(tmp_path / "results.partial.json")["responses"]
        assert sum("error" not in r for r in responses) >= 20
        assert responses[-1]["error"] == "not analysed: the server refused the request" and responses[-1]["code"] == "not_analysed"
        key = json.loads((server["workdir"] / "key_file.json").read_text())["inference"]["key"]

        # The server stops partway through a folder: the run ends, keeping what was answered, and the
        # rest is marked for a later run (it was marked "unreadable", photo by photo, to the end).
        run = start_run(key)
        stop_torchserve(server)
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 1 and "the server stopped answering after" in stderr, stderr
        assert "Traceback" not in stderr and "unreadable" not in stderr
        responses = read_json(tmp_path / "results.partial.json")["responses"]
        assert len(responses) == 102 and sum("error" not in r for r in responses) >= 20
        assert responses[-1]["error"] == "not analysed: the server stopped answering" and responses[-1]["code"] == "not_analysed"
    finally:
        stop_torchserve(server)


def test_batch_cli_keeps_what_it_did_when_interrupted_and_never_overwrites_a_photo(smoke_mar, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "0_broken.jpg").write_bytes(b"not a photo")  # sorts first: its "skipped" line says the run is going
    for number in range(150):  # the smoke model takes tens of ms a photo: enough to be interrupted
        shutil.copy(ACNE04_PHOTOS[number % 2], photos / f"photo{number:03d}.jpg")
    shutil.copy(ACNE04_PHOTOS[0], photos / "photo000.png")  # the same stem as photo000.jpg
    out = tmp_path / "results.json"
    same_folder = run_module(["handler.predict_folder", str(photos), "--model", str(smoke_mar), "--out", str(out),
                              "--annotated", str(photos)], check=False)
    assert same_folder.returncode == 2 and "would replace photos" in same_folder.stderr
    # A bad option is refused as such, writing nothing, also when a file before the first photo the model
    # sees was skipped (0_broken.jpg): it was blamed on "the server", and every photo marked 'not analysed'.
    bad_option = run_module(["handler.predict_folder", str(photos), "--model", str(smoke_mar), "--threshold", "1.5",
                             "--out", str(out)], check=False)
    assert bad_option.returncode == 2 and "threshold must be in [0, 1], got 1.5" in bad_option.stderr \
        and "server" not in bad_option.stderr and not out.exists(), bad_option.stderr

    # Ctrl-C while the model loads (the imports of torch and mmdet take seconds; the CLI's own 0.3 s).
    loading = subprocess.Popen([sys.executable, "-m", "handler.predict_folder", str(photos), "--model",
                                str(smoke_mar), "--out", str(tmp_path / "loading.json")],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    loading.send_signal(signal.SIGINT)
    _, stderr = loading.communicate(timeout=120)
    assert ended_by_ctrl_c(loading.returncode, stderr, "interrupted before the first photo: nothing was written"), \
        (loading.returncode, stderr)
    assert not (tmp_path / "loading.json").exists()

    run = subprocess.Popen([sys.executable, "-m", "handler.predict_folder", str(photos), "--model", str(smoke_mar),
                            "--out", str(out), "--csv", str(tmp_path / "counts.csv")],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stdout:  # interrupted once 20 photos are done, with 132 to go
        if "20/152 photos" in line:
            break
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted after" in stderr and "Traceback" not in stderr, stderr
    responses = read_json(out)["responses"]
    done = [r for r in responses if "error" not in r]
    assert len(responses) == 152 and 0 < len(done) < 151
    # The photos never reached are counted as such, not as skipped.
    assert f"in {len(done)} photos; 1 photos skipped (see 'responses' in {out}); {151 - len(done)} not analysed" in stdout, stdout
    assert responses[-1]["error"] == "not analysed: the run was interrupted" and responses[-1]["code"] == "not_analysed"
    with (tmp_path / "counts.csv").open(newline="") as f:
        assert next(csv.reader(f))[:4] == ["file_name", "comedone", "papule", "pustule"]
    # SIGTERM (kill, `timeout`) ends a run as Ctrl-C does; over an earlier sheet (--overwrite), what it
    # analysed goes beside it and the earlier one stays (it had been replaced by a partial one).
    earlier = out.read_bytes(), (tmp_path / "counts.csv").read_bytes()
    run = subprocess.Popen([sys.executable, "-m", "handler.predict_folder", str(photos), "--model", str(smoke_mar),
                            "--out", str(out), "--csv", str(tmp_path / "counts.csv"), "--overwrite"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stdout:
        if "20/152 photos" in line:
            break
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted after" in stderr and "Traceback" not in stderr, stderr
    assert f"{out} and {tmp_path / 'counts.csv'} are kept: what this run analysed goes to" in stderr, stderr
    assert (out.read_bytes(), (tmp_path / "counts.csv").read_bytes()) == earlier
    assert len(read_json(tmp_path / "results.partial.json")["responses"]) == 152
    assert (tmp_path / "counts.partial.csv").is_file()

    for photo in photos.glob("photo*.jpg"):
        if photo.name not in ("photo000.jpg", "photo001.jpg"):
            photo.unlink()
    # The interrupted run's results are not replaced unless asked, and nothing is analysed first.
    partial = out.read_bytes()
    drawing = ["handler.predict_folder", str(photos), "--model", str(smoke_mar), "--out", str(out),
               "--annotated", str(tmp_path / "drawn")]
    kept = run_module(drawing, check=False)
    assert kept.returncode == 2 and f"{out} already exists; add --overwrite" in kept.stderr, kept.stderr
    assert out.read_bytes() == partial and not (tmp_path / "drawn").exists() and "photos" not in kept.stdout
    drawn = run_module([*drawing, "--overwrite"])
    assert "1 photos skipped" in drawn.stdout
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == [
        "photo000.jpg.png", "photo000.png.png", "photo001.png"]  # no drawing replaces another
    # Nor are the drawings of an earlier run (here: --out is new, the drawings are not).
    again = run_module([*drawing[:5], str(tmp_path / "again.json"), *drawing[6:]], check=False)
    assert again.returncode == 2 and "photo000.jpg.png" in again.stderr and "already exist;" in again.stderr
    assert not (tmp_path / "again.json").exists()
    same_file = run_module([*drawing, "--csv", str(out), "--overwrite"], check=False)
    assert same_file.returncode == 2 and "same file" in same_file.stderr
    file_for_drawings = run_module([*drawing[:5], str(tmp_path / "again.json"), "--annotated",
                                    str(tmp_path / "counts.csv")], check=False)
    assert file_for_drawings.returncode == 2 and "is a file; give a folder" in file_for_drawings.stderr
    assert "Traceback" not in file_for_drawings.stderr and not (tmp_path / "again.json").exists()
    under_a_file = run_module([*drawing[:5], str(tmp_path / "counts.csv" / "again.json")], check=False)
    assert under_a_file.returncode == 2 and "counts.csv is a file" in under_a_file.stderr, under_a_file.stderr

    # A file name that is not UTF-8 (from a Windows zip) reaches the CSV escaped: the sheet stays UTF-8 (its
    # bytes as they were had made the whole sheet unreadable to a UTF-8 reader).
    latin1 = tmp_path / "latin1"
    latin1.mkdir()
    Path(os.fsdecode(bytes(latin1) + b"/caf\xe9.jpg")).write_bytes(ACNE04_PHOTOS[0].read_bytes())
    # Beside it: a link to itself, a folder named as a photo, and a link to the folder (its photos are these).
    (latin1 / "loop.jpg").symlink_to("loop.jpg")
    (latin1 / "album.jpg").mkdir()
    (latin1 / "here").symlink_to(".")
    result = run_module(["handler.predict_folder", str(latin1), "--model", str(smoke_mar), "--out",
                         str(latin1 / "r.json"), "--csv", str(latin1 / "counts.csv")])
    assert "Traceback" not in result.stderr and "subfolders" not in result.stderr, result.stderr
    assert "caf\\udce9.jpg," in (latin1 / "counts.csv").read_text(encoding="utf-8")
    errors = {r["file_name"]: r["error"] for r in read_json(latin1 / "r.json")["responses"] if "error" in r}
    assert errors == {"album.jpg": "the file cannot be read (is a directory)",
                      "loop.jpg": "the file cannot be read (too many levels of symbolic links)"}

    # The sheet alone, without the JSON: the skipped photos' reasons are in its error column.
    alone = tmp_path / "alone"
    sheet = run_module(["handler.predict_folder", str(latin1), "--model", str(smoke_mar), "--csv", str(alone / "c.csv")])
    assert f"wrote {alone / 'c.csv'}: " in sheet.stdout and f"see the 'error' column of {alone / 'c.csv'}" in sheet.stdout
    assert sorted(p.name for p in alone.iterdir()) == ["c.csv"]
    with (alone / "c.csv").open(newline="", encoding="utf-8") as f:
        rows = {row["file_name"]: row for row in csv.DictReader(f)}
    assert rows["album.jpg"]["error"] == "the file cannot be read (is a directory)" and rows["caf\\udce9.jpg"]["total"]
    neither = run_module(["handler.predict_folder", str(latin1), "--model", str(smoke_mar)], check=False)
    assert neither.returncode == 2 and "give --out (a JSON file of every detection), --csv" in neither.stderr


def test_batch_cli_names_a_server_address_that_cannot_be_the_inference_api(torchserve, tmp_path):
    """The management address said "unhealthy: its model cannot load", and an address without http://
    "not answering (is it running?)": both while the server ran well."""
    inference = torchserve["inference"]
    for server, message in ((torchserve["management"], "has no /ping: is it TorchServe's inference address"),
                            (inference.removeprefix("http://"), "--server must start with http:// or https://, "
                                                                f"e.g. {inference}")):
        result = run_module(["handler.predict_folder", str(ACNE04_PHOTOS[0].parent), "--server", server,
                             "--out", str(tmp_path / "results.json")], check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and not (tmp_path / "results.json").exists()
