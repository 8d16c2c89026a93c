"""The Gradio app (space/app.py) and its drawing code (space/render.py).

The app runs as a real Gradio server in a subprocess and is called with gradio_client, as a user's
script would. Its answers are compared with the inference core called directly on the same photo.
The model is the session's smoke model (tests/conftest.py: smoke_mar, detector, torchserve_url).
"""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SPACE = REPO / "space"
sys.path.insert(0, str(SPACE))

import render  # noqa: E402  (space/render.py)
from trouble import render as drawing  # noqa: E402  (the drawing itself, shared with the batch CLI)
from trouble.photo_checks import photo_warnings  # noqa: E402

PHOTO = REPO / "tests/fixtures/acne04/levle1_106_jpg.rf.f3705976fe65284ed9c00222facdb23e.jpg"
# The smoke model's scores are low: a low threshold gives it boxes to count.
LOW_THRESHOLD = 0.1
STACK_TRACE_WORDS = ("Traceback", "Exception", 'File "')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HELD_SOCKETS = []  # bound and never listening, until the tests end: see closed_port


def closed_port() -> int:
    """A loopback port that refuses connections: bound, never listening, and held. Released, the
    system handed it to the app the test started next (a fresh clone's CI run), which then answered
    its own requests to "the server" with 404."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    HELD_SOCKETS.append(held)
    return held.getsockname()[1]


@contextlib.contextmanager
def running_app(log_path: Path, app: Path = SPACE / "app.py", **env_overrides):
    """Start `python space/app.py` (or another copy of it, `app`, from its own folder) on a free port;
    yield its URL; stop it. The app's log is in log_path."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "TROUBLE_MODEL": "", "TROUBLE_MODEL_REPO": "", "TROUBLE_API_TOKEN": "", **env_overrides}
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(app)], cwd=REPO if app == SPACE / "app.py" else app.parent, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the app exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not start in 120 s:\n{log_path.read_text()[-3000:]}")
                try:
                    if requests.get(url, timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def call_app(url: str, photo: Path, download_dir: Path, threshold=None, sliced="model", slice_size=640, tta="model"):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, analytics_enabled=False, download_files=str(download_dir))
    annotated, legend, counts, severity, status, results_json, annotated_png = client.predict(
        handle_file(str(photo)), threshold is not None, threshold if threshold is not None else 0.3, sliced,
        slice_size, tta, api_name="/analyse")
    return dict(annotated=annotated, legend=legend, counts=counts, severity=severity, status=status,
                results_json=results_json, annotated_png=annotated_png)


@pytest.fixture(scope="module")
def local_app(smoke_mar, tmp_path_factory):
    log = tmp_path_factory.mktemp("app-local") / "app.log"
    with running_app(log, TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar)) as url:
        yield url


# ---------------------------------------------------------------- the app as a server

@pytest.mark.parametrize("threshold", [None, LOW_THRESHOLD])
def test_local_mode_matches_inference_core(local_app, detector, tmp_path, threshold):
    expected = detector.predict(PHOTO.read_bytes(), score_threshold=threshold, sliced=True, slice_size=640)
    result = call_app(local_app, PHOTO, tmp_path, threshold=threshold)

    table = {row[0]: row[1] for row in result["counts"]["data"]}
    assert table == {**expected["counts"], "Total": expected["total"]}
    assert f"grade {expected['severity']['grade']} ({expected['severity']['name']})" in result["severity"]
    assert "local model" in result["status"]
    saved = json.loads(Path(result["results_json"]).read_text())
    # Named after the photo and the time: downloads of two patients' photos cannot be mixed up.
    stem = f"{PHOTO.stem}-trouble-{datetime.fromisoformat(saved['analysed_at']):%Y%m%d-%H%M%S}"
    assert saved["photo"] == PHOTO.name and saved["analysed_at"][:2] == "20"
    assert Path(result["results_json"]).name == f"{stem}.json" and Path(result["annotated_png"]).name == f"{stem}.png"
    assert saved["counts"] == expected["counts"]
    assert saved["severity"] == expected["severity"]
    # What the page said beside it (the range, the warnings) is kept with it.
    assert saved["shown_on_the_page"] == {"severity": result["severity"], "status": result["status"]}
    assert [d["box"] for d in saved["detections"]] == [d["box"] for d in expected["detections"]]
    assert saved["answered_by"].startswith("the local model")
    for path in (result["annotated"], result["annotated_png"]):
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width == expected["image"]["width"]  # 640 px: drawn at full size
    if threshold is not None:
        assert expected["total"] > 0, "the smoke model should find something at a low threshold"


def test_the_low_skin_warning_is_given_for_a_test_pattern_not_for_a_grey_scale_face(local_app, tmp_path):
    """The skin check goes by colour: a grey-scale face photo has none to go by, so it gets no
    low-skin warning (it got one, as if there were no face in it), but the warning that the model
    finds far fewer lesions without colour; a coloured pattern without skin gets the low-skin one."""
    from trouble.skin import skin_fraction

    grey, pattern = tmp_path / "grey_face.jpg", tmp_path / "pattern.png"
    Image.open(PHOTO).convert("L").save(grey, quality=90)
    bars = np.zeros((480, 640, 3), np.uint8)
    for index, colour in enumerate([(255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (0, 0, 255)]):
        bars[:, index * 128:(index + 1) * 128] = colour
    Image.fromarray(bars).save(pattern)
    face = np.asarray(Image.open(PHOTO).convert("RGB"))
    assert skin_fraction(face) > 0.2 and skin_fraction(np.asarray(Image.open(grey).convert("RGB"))) is None
    assert skin_fraction(bars) < 0.05
    grey_severity = call_app(local_app, grey, tmp_path / "grey")["severity"]
    # No skin warning; the warning of a photo without colour instead (the model finds far fewer lesions).
    assert "looks like skin" not in grey_severity and grey_severity.startswith("#### A photo with little or no colour")
    bars_severity = call_app(local_app, pattern, tmp_path / "bars")["severity"]
    assert "Little of this photo looks like skin (0%)" in bars_severity and "without colour" not in bars_severity


def test_slicing_choice_reaches_the_model(local_app, tmp_path):
    """On, off, or the model's own setting: the answer's settings say what the model was run on."""
    large = tmp_path / "large.jpg"
    Image.open(PHOTO).resize((1280, 1280)).save(large, quality=90)
    settings, statuses = {}, {}
    for choice in ("model", "on", "off"):
        result = call_app(local_app, large, tmp_path / choice, sliced=choice, slice_size=512)
        settings[choice] = json.loads(Path(result["results_json"]).read_text())["settings"]
        statuses[choice] = result["status"]
    assert settings["off"]["sliced"] is False and settings["off"]["slices"] == 0
    assert "slicing off" in statuses["off"]
    # 1280 px in 512 px slices overlapping by 20%: SAHI cuts 9.
    assert settings["on"]["slice_size"] == 512 and settings["on"]["slices"] == 9
    assert "9 slices of 512 px" in statuses["on"]
    # The smoke archive's own: on, 640 px slices (the slider's 512 is not sent), 9 of them too.
    assert settings["model"]["slice_size"] == 640 and settings["model"]["slices"] == 9


def test_test_time_augmentation_choice_reaches_the_model(local_app, tmp_path):
    settings, statuses = {}, {}
    for choice in ("model", "on"):
        result = call_app(local_app, PHOTO, tmp_path / choice, sliced="off", tta=choice)
        settings[choice] = json.loads(Path(result["results_json"]).read_text())["settings"]
        statuses[choice] = result["status"]
    assert settings["model"]["passes"] == 1 and "whole photo in one pass" in statuses["model"]  # the archive: off
    assert settings["on"]["passes"] == 4 and settings["on"]["tta"] is True
    assert "whole photo (slicing off), in 4 passes fused (test-time augmentation)" in statuses["on"]
    # The passes' own thresholds are the model's too, not the app's.
    assert "the model's for test-time augmentation" in statuses["on"] and "set in the app" not in statuses["on"]


def test_heic_upload_is_analysed_like_the_same_photo(local_app, detector, tmp_path):
    """An iPhone's HEIC goes through the app as it is; the drawing is made from it too."""
    heic = tmp_path / "photo.heic"
    Image.open(PHOTO).save(heic, "HEIF", quality=95)
    expected = detector.predict(heic.read_bytes(), score_threshold=LOW_THRESHOLD, sliced=True, slice_size=640)
    result = call_app(local_app, heic, tmp_path / "downloads", threshold=LOW_THRESHOLD)
    assert {row[0]: row[1] for row in result["counts"]["data"]} == {**expected["counts"], "Total": expected["total"]}
    assert "local model" in result["status"]
    with Image.open(result["annotated_png"]) as image:
        assert image.format == "PNG" and image.width == expected["image"]["width"]


def test_bad_image_gets_the_inference_core_message(local_app, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"%PDF-1.4 not a photo at all")
    result = call_app(local_app, not_a_photo, tmp_path / "downloads")
    assert "PDF document, not a photo" in result["status"]
    assert not any(word in result["status"] for word in STACK_TRACE_WORDS)
    assert result["counts"]["data"] == [] and result["annotated"] is None


def test_upload_limit_is_configured(local_app):
    # Gradio's own refusal (a notice that passes) only above 64 MB; from 20 MB the app's, which stays.
    config = requests.get(f"{local_app}config", timeout=10).json()
    assert config["max_file_size"] == 64 * 1024 * 1024


def test_server_down_gives_a_clear_message(tmp_path):
    api_url = f"http://127.0.0.1:{closed_port()}"
    with running_app(tmp_path / "app.log", TROUBLE_MODE="server", TROUBLE_API_URL=api_url) as url:
        result = call_app(url, PHOTO, tmp_path)
    assert "is not answering" in result["status"] and api_url in result["status"]
    assert "make serve" in result["status"]
    assert not any(word in result["status"] for word in STACK_TRACE_WORDS)
    assert result["annotated"] is None and result["results_json"] is None


def test_server_mode_matches_inference_core(torchserve_url, detector, tmp_path):
    """The production path: the app → TorchServe (the .mar's handler) → the same numbers."""
    expected = detector.predict(PHOTO.read_bytes(), score_threshold=LOW_THRESHOLD, sliced=True, slice_size=640)
    with running_app(tmp_path / "app.log", TROUBLE_MODE="server", TROUBLE_API_URL=torchserve_url) as url:
        result = call_app(url, PHOTO, tmp_path, threshold=LOW_THRESHOLD)
    table = {row[0]: row[1] for row in result["counts"]["data"]}
    assert table == {**expected["counts"], "Total": expected["total"]}
    assert f"grade {expected['severity']['grade']}" in result["severity"]
    assert f"TorchServe at {torchserve_url.rstrip('/')}" in result["status"]


# ---------------------------------------------------------------- in-process: mode choice and limits

def test_auto_mode_falls_back_to_the_local_model(smoke_mar):
    import app
    from backends import ServerBackend

    server = ServerBackend(f"http://127.0.0.1:{closed_port()}")
    analyzer = app.Analyzer("auto", server, Path(smoke_mar), None)
    response, answered_by = analyzer.predict(PHOTO.read_bytes(), threshold=LOW_THRESHOLD)
    # One parenthesis, so that the time after it reads as the local model's, not as TorchServe's wait.
    assert answered_by == f"the local model {smoke_mar.name} (in this process, as {server.description} did not answer)"
    assert response["total"] == sum(response["counts"].values())
    assert "not answering now" in analyzer.health() and "local model will answer" in analyzer.health()


def test_too_large_upload_is_refused_before_sending(tmp_path):
    import app
    from backends import ServerBackend

    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(app.MAX_UPLOAD_MB * 1_000_000 + 1)
    # The server address is never contacted: the size check comes first.
    analyzer = app.Analyzer("server", ServerBackend("http://127.0.0.1:9"), None, None)
    outputs = app.analyse(analyzer, str(big), False, 0.3, "model", 640)
    assert "the limit is 20 MB" in outputs[4]
    assert outputs[0] is None
    # Said as soon as the photo is chosen, in the status line (Gradio's notice passes, and the page empties).
    assert app.photo_problem(str(big)).startswith(render.ERROR_PREFIX + "The photo is 20.0 MB; the limit is 20 MB")
    # An empty file is named as one, not with the server's "the request has no image".
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert app.photo_problem(str(empty)).startswith(render.ERROR_PREFIX + "The file is empty (0 bytes)")
    assert app.analyse(analyzer, str(empty), False, 0.3, "model", 640)[4].startswith(
        render.ERROR_PREFIX + "The file is empty")


def test_local_mode_without_a_model_says_what_to_set():
    import app
    from backends import ServerBackend

    analyzer = app.Analyzer("local", ServerBackend(), None, None)
    outputs = app.analyse(analyzer, str(PHOTO), False, 0.3, "model", 640)
    assert "TROUBLE_MODEL" in outputs[4] and outputs[0] is None


def test_an_unknown_slicing_choice_is_named():
    """The API takes the radio's values only; anything else is refused before the photo is sent."""
    import app
    from backends import ServerBackend

    analyzer = app.Analyzer("server", ServerBackend("http://127.0.0.1:9"), None, None)
    outputs = app.analyse(analyzer, str(PHOTO), False, 0.3, True, 640)
    assert "Sliced inference must be one of model, on, off; got True." in outputs[4] and outputs[0] is None


# ---------------------------------------------------------------- rendering (space/render.py)

def fake_response(classes=("comedone", "papule"), width=400, height=300, detections=()):
    counts = {name: 0 for name in classes}
    for detection in detections:
        counts[detection["type"]] += 1
    from trouble.severity import describe_grade

    return {"model": {"name": "trouble", "version": "1", "classes": list(classes), "pretrained": "none",
                      "score_thresholds": {name: 0.3 for name in classes}},
            "image": {"width": width, "height": height, "working_width": width, "working_height": height},
            "detections": list(detections), "counts": counts, "total": len(detections),
            "severity": describe_grade(len(detections)), "warnings": [],
            "settings": {"score_thresholds": {name: 0.3 for name in classes}, "sliced": False, "slice_size": 640},
            "timings_ms": {"decode": 1.0, "inference": 20.0, "postprocess": 1.0, "total": 22.0}}


def test_palette_is_okabe_ito_fixed_per_type_and_distinct():
    palette = render.palette_for(["papule", "freckle", "mole", "comedone"])
    assert palette["papule"] == drawing.TYPE_COLOURS["papule"]
    assert palette["comedone"] == drawing.TYPE_COLOURS["comedone"]
    assert set(palette.values()) <= set(drawing.OKABE_ITO.values())
    assert len(set(palette.values())) == 4
    # The same type keeps its colour whatever the other classes are.
    assert render.palette_for(["comedone"])["comedone"] == palette["comedone"]
    # Two known types of one fixed colour in one model: the second takes another.
    shared = render.palette_for(["comedone", "blackhead", "acne"])
    assert len(set(shared.values())) == 3 and shared["comedone"] == drawing.TYPE_COLOURS["comedone"]


def _cie_lab(rgb):
    """sRGB (0-255) to CIE L*a*b* (D65), for colour differences as the eye sees them."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
    rows = [(0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505)]
    x, y, z = (sum(m * c for m, c in zip(row, linear)) / white
               for row, white in zip(rows, (0.95047, 1.0, 1.08883)))
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_the_study_types_get_colours_far_apart():
    """Comedone, papule and pustule: no two of them alike (papule's vermillion and pustule's orange
    had been 33 apart in CIE76 delta E; two colours 60 apart differ at a glance)."""
    import math

    palette = render.palette_for(["comedone", "papule", "pustule"])
    labs = [_cie_lab(drawing.hex_to_rgb(colour)) for colour in palette.values()]
    differences = [math.dist(a, b) for i, a in enumerate(labs) for b in labs[i + 1:]]
    assert min(differences) >= 60, (palette, differences)


def test_boxes_are_drawn_in_their_types_colour_with_a_legend():
    detections = [{"type": "comedone", "score": 0.9, "box": [100, 60, 220, 180]},
                  {"type": "papule", "score": 0.8, "box": [500, 300, 700, 500]}]
    # Boxes are in original pixels (800x600); the photo shown is half that size.
    response = fake_response(width=800, height=600, detections=detections)
    photo = Image.new("RGB", (400, 300), (128, 128, 128))
    drawn = render.draw_detections(photo, response)
    pixels = np.asarray(drawn)
    palette = render.palette_for(response["model"]["classes"])
    width = drawing.line_width_for((400, 300))
    middle = width // 2
    # comedone box at (50, 30)-(110, 90) after scaling: its left edge in the comedone colour.
    assert tuple(pixels[60, 50 + middle]) == drawing.hex_to_rgb(palette["comedone"])
    assert tuple(pixels[30 + middle, 80]) == drawing.hex_to_rgb(palette["comedone"])
    # papule box at (250, 150)-(350, 250)
    assert tuple(pixels[200, 250 + middle]) == drawing.hex_to_rgb(palette["papule"])
    # Inside a box and outside all boxes the photo is untouched.
    assert tuple(pixels[60, 80]) == (128, 128, 128)
    assert tuple(pixels[280, 20]) == (128, 128, 128)
    # The legend strip below the photo holds a swatch of each type's colour.
    assert drawn.size[0] == 400 and drawn.size[1] > 300
    strip = pixels[300:].reshape(-1, 3)
    for name in ("comedone", "papule"):
        assert (strip == drawing.hex_to_rgb(palette[name])).all(axis=1).any(), name


def test_large_photos_are_drawn_at_display_size():
    response = fake_response(width=6000, height=4000,
                             detections=[{"type": "papule", "score": 0.5, "box": [3000, 2000, 3600, 2600]}])
    drawn = render.draw_detections(Image.new("RGB", (6000, 4000), (128, 128, 128)), response)
    assert drawn.width == render.DISPLAY_MAX_SIDE
    scale = render.DISPLAY_MAX_SIDE / 6000
    pixels = np.asarray(drawn)
    colour = drawing.hex_to_rgb(render.palette_for(["comedone", "papule"])["papule"])
    width = drawing.line_width_for(drawn.size)
    assert tuple(pixels[round(2300 * scale), round(3000 * scale) + width // 2]) == colour


def test_a_small_lesion_stays_visible_inside_its_box_on_a_large_photo():
    """On a 2048 px drawing the line is 7 px: a 24 px box keeps its middle clear all the same."""
    response = fake_response(width=2048, height=1536,
                             detections=[{"type": "papule", "score": 0.5, "box": [1000, 700, 1024, 724]}])
    pixels = np.asarray(render.draw_detections(Image.new("RGB", (2048, 1536), (128, 128, 128)), response))
    assert drawing.line_width_for((2048, 1536)) == 7
    assert all(tuple(pixels[712, x]) == (128, 128, 128) for x in range(1005, 1019))  # 14 of the 24 px clear
    assert tuple(pixels[712, 1000]) == drawing.hex_to_rgb(render.palette_for(["comedone", "papule"])["papule"])


def test_legend_counts_table_and_severity_text():
    detections = [{"type": "papule", "score": 0.8, "box": [10, 10, 30, 30]}] * 7
    response = fake_response(detections=detections)
    legend = render.legend_html(response)
    for name, count in (("comedone", 0), ("papule", 7)):
        assert f"{name}: {count}" in legend
        assert render.palette_for(response["model"]["classes"])[name] in legend
    assert render.counts_rows(response) == [["comedone", 0], ["papule", 7], ["Total", 7]]
    severity = render.severity_markdown(response)
    assert "grade 1 (moderate)" in severity and "Hayashi" in severity and "7 lesions" in severity
    status = render.status_markdown(response, "TorchServe at http://x", 250.0)
    assert "TorchServe at http://x" in status and "0.25 s" in status and "the model's defaults" in status
    assert "whole photo in one pass (slicing off)" in status
    # Which photo the answer is of, and which model (its version; the day it was archived, when known).
    assert render.status_markdown(response, "x", 1.0, "IMG_0003.HEIC").startswith("`IMG_0003.HEIC`: Answered by")
    assert "with the model trouble 1" in status and "archived" not in status
    response["model"]["archived"] = "2026-11-27T21:22:17+00:00"
    assert "with the model trouble 1, archived 2026-11-27." in render.status_markdown(response, "x", 1.0)
    # The status says what the model was run on, not only what was asked for.
    response["settings"].update(sliced=True, slices=0)
    assert "whole photo in one pass (no larger than a 640 px slice)" in render.status_markdown(response, "x", 1.0)
    response["settings"].update(slices=48, full_image_pass=True)
    assert "sliced: 48 slices of 640 px plus the whole photo" in render.status_markdown(response, "x", 1.0)
    # A photo over 4096 px is sliced in its working copy's pixels: said, not left to read as the photo's.
    large = {**response, "image": {**response["image"], "width": 8000, "height": 6000, "working_width": 4096,
                                   "working_height": 3072}}
    assert ("Photo 8000x6000 px, sliced: 48 slices of 640 px of its 4096x3072 px working copy plus the whole photo"
            in render.status_markdown(large, "x", 1.0))
    assert "Sliced: 48 slices of 640 px of its 4096x3072 px working copy." in drawing.caption_for(large)
    response["settings"].update(sliced=False, slices=0, face_crop=[600.4, 580.0, 1240.4, 1220.0])
    assert ("cropped to the face (640x640 px at 600,580), the crop in one pass (slicing off)"
            in render.status_markdown(response, "x", 1.0))
    response["settings"].update(sliced=True, slices=9)  # the crop sliced: its extra pass is the crop's
    assert ("cropped to the face (640x640 px at 600,580), sliced: 9 slices of 640 px plus the crop"
            in render.status_markdown(response, "x", 1.0))
    response["settings"].update(passes=4)  # test-time augmentation: each slice, and the crop, 4 times
    assert ("sliced: 9 slices of 640 px plus the crop, each in 4 passes fused (test-time augmentation)"
            in render.status_markdown(response, "x", 1.0))
    assert "<script" not in render.legend_html(fake_response(classes=("<script>",)))
    assert "validated on" not in severity  # a model archived without an evaluation claims nothing
    response["model"]["validation"] = {"data": "data/acne04/valid/annotations.json", "images": 283, "mAP50": 0.306,
                                       "count_mae": 4.3, "grade_accuracy": 0.781}
    assert ("How far to trust this: on the 283 photos the model was checked on (acne04, valid split), its lesion "
            "count was off by 4.3 per photo on average (more on photos with many lesions), its grade matched the "
            "label for 78% of them, and it scored 0.31 for how well its boxes match the marked lesions (mAP50; 1 is "
            "perfect).") in render.severity_markdown(response)
    assert "This is a weak model" in render.severity_markdown(response)  # mAP50 under 0.5
    assert "flatter it" not in render.severity_markdown(response)  # not known of this archive's thresholds
    # 7 lesions, off by 4.3 on average: 3 to 11, mild to moderate; said only of the validated settings
    assert ("7 lesions found; the marked count on such a photo is typically 3-11 (mild to moderate): the model's "
            "counts were off by 4.3 on average in validation (more on some photos)") in render.severity_markdown(response)
    other = {**response, "settings": {**response["settings"], "score_thresholds": {"comedone": 0.5, "papule": 0.5}}}
    assert "is typically" not in render.severity_markdown(other)
    assert "threshold below the model's own" not in render.severity_markdown(other)  # raised, not lowered
    # A threshold below the model's: more boxes, more of them not lesions; the heading says so too.
    lowered = {**response, "settings": {**response["settings"], "score_thresholds": {"comedone": 0.1, "papule": 0.3}}}
    assert render.severity_markdown(lowered).startswith("#### A threshold below the model's own\nThe model keeps more "
                                                        "boxes, and more of them are not lesions")
    assert "### Severity: grade 1 (moderate): likely lower, as the threshold is below the model's\n" in \
        render.severity_markdown(lowered)
    # At the model's limit of boxes, the count is mostly not lesions: the heading does not stand plain.
    capped = {**response, "warnings": [{"code": "count_capped", "title": "The count reached the model's limit",
                                        "detail": "x"}]}
    assert "### Severity: grade 1 (moderate): likely lower, as the count reached the model's limit\n" in \
        render.severity_markdown(capped)
    # With the error by the grade of the count found (archives since it), the range is that grade's:
    # a moderate count here, its photos' marked counts -2 to +6 of the model's for 8 in 10.
    by_grade = [{"images": 120, "mae": 1.5, "marked_minus_found": [-2, 4], "labels": [100, 20, 0, 0]},
                {"images": 12, "mae": 3.3, "marked_minus_found": [-2, 6], "labels": [1, 9, 2, 0]}, None, None]
    graded = {**response, "model": {**response["model"],
                                    "validation": {**response["model"]["validation"], "by_found_grade": by_grade}}}
    assert ("7 lesions found; the marked count on such a photo is typically 5-13 (mild to moderate): on the 12 "
            "validation photos where the model's count was moderate too, ACNE04's marked count was within -2 to +6 "
            "of the model's for 8 in 10 of them; the labels of those photos: 1 mild, 9 moderate, 2 severe"
            ) in render.severity_markdown(graded)
    by_grade[1] = {"images": 7, "mae": 3.3, "marked_minus_found": [-2, 6], "labels": [1, 5, 0, 0]}  # 6 of 7 graded
    assert ("typically 5-13 (mild to moderate): on the 7 validation photos where the model's count was moderate "
            "too, ACNE04's marked count was within -2 to +6 of the model's for most of them; the labels of "
            "the 6 of them that carry one: 1 mild, 5 moderate") in render.severity_markdown(graded)
    by_grade[1] = {"images": 2, "mae": 3.0, "marked_minus_found": [-3, -3], "labels": [0, 2, 0, 0]}
    assert ("7 lesions found; only 2 validation photos had a moderate count: too few for a typical range; the "
            "labels of those photos: 2 moderate") in render.severity_markdown(graded)
    by_grade[1] = None  # no validation photo's count was moderate: no range (not the average error's)
    assert ("7 lesions found; no validation photo had a moderate count, so there is no typical range for it"
            in render.severity_markdown(graded))
    # A photo without colour: the figures are of colour photos, and the count is likely too low.
    by_grade[1] = {"images": 12, "mae": 3.3, "marked_minus_found": [-2, 6], "labels": [1, 9, 2, 0]}
    assert "is typically" not in render.severity_markdown({**graded, "warnings": photo_warnings(None, "face", False)})
    # Figures without a count error or grade accuracy still make a sentence.
    only_map = {**response, "model": {**response["model"], "validation": {"data": "x/valid/_annotations.coco.json",
                                                                          "images": 9, "mAP50": 0.8}}}
    assert ("checked on (x, valid split), it scored 0.80 for how well" in render.severity_markdown(only_map))
    assert "1 lesion found" in render.severity_markdown(fake_response(detections=[
        {"type": "papule", "score": 0.8, "box": [10, 10, 30, 30]}]))
    assert "model's own settings" not in render.severity_markdown(response)
    response["model"]["validation"]["thresholds_chosen_on_these_photos"] = True
    assert "chosen on those same photos, so these figures flatter it" in render.severity_markdown(response)
    # What makes the count say little comes first, above the grade's heading: the grade below says nothing then.
    little_skin = {**response, "warnings": photo_warnings(0.01, "face", face_cropped=False)}
    assert render.severity_markdown(little_skin).startswith(
        "#### Little of this photo looks like skin (1%)\nIf there is no face in it, this count and grade say nothing")
    assert "Little of this photo" not in render.severity_markdown(response)
    # The heading read alone says so too, and no typical range is given: its figures are of colour close-ups.
    assert "### Severity: grade 1 (moderate): it says nothing if there is no face in the photo\n" in \
        render.severity_markdown(little_skin)
    small_face = {**response, "warnings": photo_warnings(0.08, "face", face_cropped=False)}
    assert "### Severity: grade 1 (moderate): likely higher, as the count is likely too low\n" in \
        render.severity_markdown(small_face)
    assert "is typically" in render.severity_markdown(response)
    assert "is typically" not in render.severity_markdown(small_face) + render.severity_markdown(little_skin)
    for dark_or_small in (photo_warnings(0.6, "face", False, brightness=40),
                          photo_warnings(0.6, "face", False, analysed_size=(120, 120))):
        assert "### Severity: grade 1 (moderate): likely higher, as the count is likely too low\n" in \
            render.severity_markdown({**response, "warnings": dark_or_small})
    # A dark photo brightened for the model may be counted off either way: the heading does not say "higher".
    brightened = {**response, "image": {**response["image"], "brightened_by": 2.75},
                  "warnings": photo_warnings(0.6, "face", False, brightness=40, brightened_by=2.75)}
    assert "### Severity: grade 1 (moderate): less sure, as the photo is dark\n" in render.severity_markdown(brightened)
    assert "#### A dark photo, brightened 2.8x for the model\n" in render.severity_markdown(brightened)
    assert "one type" not in render.legend_html(response)
    assert "this model has one type, acne" in render.legend_html(fake_response(classes=("acne",)))
    # Figures measured at the model's settings are qualified when the answer used others.
    response["settings"]["tta"] = True
    assert "Those figures are for the model's own settings" in render.severity_markdown(response)
    response["settings"]["tta"] = False
    response["settings"]["score_thresholds"] = {"comedone": 0.5, "papule": 0.5}
    assert "Those figures are for the model's own settings" in render.severity_markdown(response)


def test_trust_figures_are_qualified_when_slicing_differs_and_changed_settings_mark_the_answer():
    response = fake_response(detections=[])
    response["model"]["validation"] = {"data": "valid", "images": 283, "mAP50": 0.31, "count_mae": 4.2,
                                       "grade_accuracy": 0.78, "tta": False, "sliced": False}
    response["model"]["score_thresholds"] = response["settings"]["score_thresholds"]
    response["settings"].update(slices=0, tta=False)
    assert "off by 4.2 per photo" in render.severity_markdown(response)
    assert "Those figures are for the model's own settings" not in render.severity_markdown(response)
    response["settings"].update(sliced=True, slices=12)  # sliced, where the figures were measured whole
    assert "Those figures are for the model's own settings" in render.severity_markdown(response)

    status = render.status_markdown(response, "x", 1.0)
    assert render.mark_stale(status).startswith(render.STALE_NOTE)
    assert render.mark_stale(render.mark_stale(status)) == render.mark_stale(status)  # marked once
    assert render.mark_stale(render.DROPPED_NOTE) == render.DROPPED_NOTE  # not an answer: nothing to mark
    assert render.mark_stale("") == "" and render.mark_stale(render.error_markdown("no")) == render.error_markdown("no")
    severity = render.severity_markdown(response)  # a heading: the note goes on a line of its own before it
    assert render.mark_stale(severity) == render.STALE_NOTE + "\n\n" + severity
    # Settings put back: the text as it was.
    for text in (status, severity, "", render.DROPPED_NOTE, render.error_markdown("no")):
        assert render.unmark_stale(render.mark_stale(text)) == text


def test_an_answer_is_shown_only_for_its_photo_and_marked_while_its_settings_are_not_the_pages():
    """The step after an analysis (space/app.py shown_if_current): the browser test covers a photo
    changed mid-analysis through the page; here every case of the rule itself."""
    import app

    settings = (False, 0.3, "model", 640, "model")
    made_with = (settings, {})  # what the model's settings meant is not known (say, an old answer)
    outputs = ("image", "legend", [["Total", 3]], "### Severity", "Answered by the local model", "a.json", "a.png")
    answer = ("/uploads/a.jpg", made_with, outputs)
    shown = app.shown_if_current(answer, "", "/uploads/a.jpg", *settings)
    # Shown, the answer (it holds an image) not kept in the session, and the settings it was made with.
    assert shown == (None, made_with, *outputs)
    other = (True, 0.5, "model", 640, "model")
    changed = app.shown_if_current(answer, "", "/uploads/a.jpg", *other)
    assert changed[1] == made_with  # those of the answer, not the page's
    assert changed[6].startswith(render.STALE_NOTE) and changed[6].endswith(outputs[4])
    assert changed[5].startswith(render.STALE_NOTE) and changed[5].endswith(outputs[3])  # the grade too
    assert changed[2:5] == outputs[:3] and changed[7:] == outputs[5:]
    # A setting changed afterwards: marked; put back to the answer's settings: the mark goes.
    status, severity = outputs[4], outputs[3]
    marked = app.marked_for_settings(made_with, status, severity, *other)
    assert all(text.startswith(render.STALE_NOTE) for text in marked)
    assert app.marked_for_settings(made_with, *marked, *settings) == (status, severity)
    assert app.marked_for_settings(None, status, severity, *settings)[0].startswith(render.STALE_NOTE)
    # A setting the analysis does not use changes no answer: the threshold with its box unticked, the
    # slice size with slicing not on.
    unused_moved = (False, 0.7, "model", 1024, "model")
    assert app.marked_for_settings(made_with, status, severity, *unused_moved) == (status, severity)
    assert app.shown_if_current(answer, "", "/uploads/a.jpg", *unused_moved) == (None, made_with, *outputs)
    used = (False, 0.3, "on", 640, "model")
    assert app.marked_for_settings(made_with, status, severity, *used)[0].startswith(render.STALE_NOTE)
    assert app.marked_for_settings((used, {}), status, severity, False, 0.3, "on", 1024, "model")[0].startswith(
        render.STALE_NOTE)
    skipped = app.gr.skip()
    # Another photo on the page: nothing of the answer, and the status line says it was dropped, unless
    # it names what is wrong with the new photo; no photo (cleared): nothing at all.
    assert app.shown_if_current(answer, "", "/uploads/b.jpg", *settings) == (
        *(skipped,) * 6, render.DROPPED_NOTE, skipped, skipped)
    assert app.shown_if_current(answer, "**not a photo**", "/uploads/b.jpg", *settings) == (skipped,) * 9
    assert app.shown_if_current(answer, "", None, *settings) == (skipped,) * 9
    assert app.shown_if_current(None, "", "/uploads/a.jpg", *settings) == (skipped,) * 9


def test_the_models_own_setting_and_the_same_setting_by_hand_are_one_analysis():
    """An answer made with "The model's setting" knows what that was (its `settings`): choosing the
    same by hand afterwards is the same analysis, and is not marked as made with other settings."""
    import app

    status, severity = "Answered by the local model", "### Severity"
    # The demo model's own settings: one pass, no slicing.
    settings = (False, 0.3, "model", 640, "model")
    answer_settings = {"sliced": False, "slice_size": 640, "tta": False, "passes": 1}
    made_with = (settings, app.model_settings_of({"settings": answer_settings}, "model", "model"))
    assert made_with[1] == {"sliced": ("off", None), "tta": "off"}
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "off", 640, "off") == (status, severity)
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "model", 640, "off") == (status, severity)
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "model", 640, "on")[0].startswith(
        render.STALE_NOTE)
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "on", 640, "model")[0].startswith(
        render.STALE_NOTE)
    # A model that slices at 512: "On" by hand at 512 is the same, at 640 it is not.
    sliced_at_512 = {"sliced": True, "slice_size": 512, "tta": False}
    made_with = (settings, app.model_settings_of({"settings": sliced_at_512}, "model", "model"))
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "on", 512, "model") == (status, severity)
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "on", 640, "model")[0].startswith(
        render.STALE_NOTE)
    # Only a setting left at the model's tells what the model's is: an answer made with TTA "Off" by
    # hand says nothing of the model's own, so "The model's setting" afterwards is marked.
    by_hand = (False, 0.3, "model", 640, "off")
    made_with = (by_hand, app.model_settings_of({"settings": answer_settings}, "model", "off"))
    assert made_with[1] == {"sliced": ("off", None)}
    assert app.marked_for_settings(made_with, status, severity, False, 0.3, "model", 640, "model")[0].startswith(
        render.STALE_NOTE)
    assert app.model_settings_of(None, "model", "model") == {}  # a failed analysis


def test_uploads_and_results_are_removed_when_the_app_is_stopped(smoke_mar, tmp_path):
    """docker stop and a Space restart send SIGTERM: the photo and its results must not stay behind."""
    temp = tmp_path / "temp"
    temp.mkdir()
    with running_app(tmp_path / "app.log", TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar), TMPDIR=str(temp),
                     GRADIO_TEMP_DIR="") as url:
        result = call_app(url, PHOTO, tmp_path / "downloads", threshold=LOW_THRESHOLD)
        assert "Answered by" in result["status"]
        left = [p for p in temp.rglob("*") if p.is_file()]
        assert any(p.name == PHOTO.name for p in left) and any(p.suffix == ".json" for p in left)
    assert [p for p in temp.rglob("*") if p.is_file()] == [], "uploads or results left after SIGTERM"


def test_in_a_space_the_default_mode_is_local():
    """A Gradio-SDK Space has no TorchServe: its page must not talk of one (HF sets SPACE_ID in every Space)."""
    probe = "import sys; sys.path.insert(0, 'space'); import app; print(app.Analyzer.from_environment().mode)"
    for space_id, mode in (("user/name", "local"), ("", "auto")):
        env = {**os.environ, "SPACE_ID": space_id, "TROUBLE_MODE": ""}
        result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.stdout.strip().splitlines()[-1] == mode, result.stderr[-2000:]


def test_the_space_as_uploaded_starts_and_answers_with_the_model_it_carries(smoke_mar, tmp_path):
    """The Gradio Space is push.py's list of files and nothing else (no repository around it, no
    model_store/). Started as the Hub starts it (`python app.py` in its folder, SPACE_ID set), it runs
    the model uploaded with it and answers an example photo."""
    import push  # space/push.py

    folder = tmp_path / "space"
    push.stage(push.gradio_space_files(smoke_mar, None, "user/name", "https://huggingface.co"), folder)
    example = sorted((folder / "examples").glob("*.jpg"))[0]
    with running_app(tmp_path / "app.log", app=folder / "app.py", SPACE_ID="user/name", TROUBLE_MODE="",
                     PYTHONPATH="") as url:
        result = call_app(url, example, tmp_path / "downloads", threshold=LOW_THRESHOLD)
    log = (tmp_path / "app.log").read_text()
    assert "the local model trouble.mar (in this process)" in result["status"], result["status"]
    assert str(folder / "model" / "trouble.mar") in log, log[-2000:]  # the uploaded model, not the repository's
    assert str(REPO) not in log, "the Space used a file of the repository"
    answer = json.loads(Path(result["results_json"]).read_text())
    assert answer["photo"] == example.name and answer["counts"] and "grade" in answer["severity"]


def test_gradio_default_concurrency_limit_lets_a_second_analysis_start_while_one_runs(smoke_mar, tmp_path):
    """GRADIO_DEFAULT_CONCURRENCY_LIMIT=2 (meant for a TorchServe with two workers) lets the app's queue run
    two analyses at once: the second starts while the first runs instead of queueing behind it (Gradio's
    default is one at a time). In local mode, as here, the model then takes them one after the other."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    from tests.synthetic_data import make_image

    large = tmp_path / "large.jpg"
    make_image(size=(1600, 1200), n_lesions=30, seed=5)[0].save(large, "JPEG", quality=90)
    with running_app(tmp_path / "app.log", TROUBLE_MODE="local", TROUBLE_MODEL=str(smoke_mar),
                     GRADIO_DEFAULT_CONCURRENCY_LIMIT="2") as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "downloads"))
        # Sliced at 128 px, the large photo keeps the smoke model busy for seconds.
        first = client.submit(handle_file(str(large)), False, 0.3, "on", 128, "model", api_name="/analyse")
        deadline = time.monotonic() + 60
        while first.status().code != Status.PROCESSING and time.monotonic() < deadline:
            time.sleep(0.05)
        second = client.submit(handle_file(str(PHOTO)), False, 0.3, "model", 640, "model", api_name="/analyse")
        while True:
            second_started = second.status().code in (Status.PROCESSING, Status.FINISHED)
            first_running = first.status().code == Status.PROCESSING  # read after: it was running then too
            if second_started or not first_running:
                break
            time.sleep(0.05)
        assert second_started and first_running, "the second analysis waited in the queue until the first had finished"
        assert "Answered by" in first.result(timeout=120)[4] and "Answered by" in second.result(timeout=120)[4]


def test_the_app_refuses_to_start_on_a_bad_setting_with_one_line(tmp_path):
    """A mistyped environment variable ends the start with a line naming it and exit code 2, no traceback
    (gradio itself reads GRADIO_SERVER_PORT as it is imported, with a traceback for a bad value)."""
    for name, value, message in (("TROUBLE_MODE", "bogus", "TROUBLE_MODE must be one of auto, server, local"),
                                 ("TROUBLE_API_URL", "localhost:8080", "TROUBLE_API_URL must start with http://"),
                                 # Its example had been "e.g. http://ftp://x".
                                 ("TROUBLE_API_URL", "ftp://x", "must start with http:// or https://, e.g. http://x\n"),
                                 # Checked as the batch CLI checks --server: it had been "not answering" on the page.
                                 ("TROUBLE_API_URL", "http://:8080", "TROUBLE_API_URL http://:8080 names no host"),
                                 ("GRADIO_SERVER_PORT", "abc", "GRADIO_SERVER_PORT must be a port number"),
                                 ("GRADIO_SERVER_PORT", "70000", "GRADIO_SERVER_PORT must be a port number"),
                                 ("GRADIO_DEFAULT_CONCURRENCY_LIMIT", "none",
                                  "GRADIO_DEFAULT_CONCURRENCY_LIMIT must be a whole number from 1 up")):
        env = {**os.environ, "TROUBLE_MODE": "server", "TMPDIR": str(tmp_path), name: value}
        result = subprocess.run([sys.executable, str(SPACE / "app.py")], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr, (name, value, result.stderr[-2000:])
        assert not any(word in result.stderr for word in STACK_TRACE_WORDS), result.stderr[-2000:]
    # A port in use (an app still running from before): it was Gradio's OSError traceback and exit 1.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TROUBLE_MODE": "server", "TMPDIR": str(tmp_path), "GRADIO_SERVER_PORT": str(port)}
        result = subprocess.run([sys.executable, str(SPACE / "app.py")], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=120)
    assert result.returncode == 2 and f"error: the app cannot listen on 127.0.0.1:{port}" in result.stderr, \
        result.stderr[-2000:]
    assert not any(word in result.stderr for word in STACK_TRACE_WORDS), result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], "the app's temporary folder was left behind"


def test_no_lesion_at_a_raised_threshold_is_explained_and_the_drawing_keeps_its_caption():
    """Nothing found at a threshold above the model's own reads as "mild" without a word of why; a drawing
    saved on its own keeps its grade, thresholds and "not a diagnosis"."""
    none = fake_response(detections=[])
    assert "No lesion was found at a threshold above" not in render.severity_markdown(none)
    none["settings"]["score_thresholds"] = {"comedone": 0.6, "papule": 0.6}
    # Above the grade's heading, not below it: the heading alone reads "grade 0 (mild)".
    assert render.severity_markdown(none).startswith("#### No lesion was found at a threshold above the model's own")

    response = fake_response(detections=[{"type": "papule", "score": 0.8, "box": [10, 10, 30, 30]}] * 7)
    caption = drawing.caption_for(response)
    assert caption == ("Severity grade 1 (moderate): 7 lesions. Score thresholds: comedone 0.30, papule 0.30. "
                       "Counted by the research model trouble 1: not a diagnosis.")
    # Slicing and test-time augmentation change the count: a drawing made with them says so.
    run_otherwise = {**response, "settings": {**response["settings"], "slices": 48, "slice_size": 640, "passes": 4}}
    assert ("Score thresholds: comedone 0.30, papule 0.30. Sliced: 48 slices of 640 px. Test-time augmentation: "
            "4 passes. Counted by") in drawing.caption_for(run_otherwise)
    # So does what makes the count say little (the answer's warnings), right after the grade.
    assert drawing.caption_for({**response, "warnings": photo_warnings(None, "face", False)}).startswith(
        "Severity grade 1 (moderate): 7 lesions. A photo with little or no colour (grey-scale, sepia, a filter): "
        "The model learnt from colour photos")
    plain = drawing.draw_detections(Image.new("RGB", (400, 300), (200, 160, 140)), response)
    # The legend row, then the caption wrapped over more rows at 400 px: the strip is taller than one row.
    font_size = max(14, 400 // 45)
    assert plain.height - 300 > 2 * (font_size + font_size // 2)
    bottom = np.asarray(plain)[300 + 2 * font_size:]
    assert (bottom < 100).all(axis=2).any(), "the caption's text is drawn"


def test_a_drawing_says_when_it_was_made_and_shows_a_dark_photo_as_the_model_was_given_it():
    """A drawing shared on its own keeps the days the photo was taken and analysed (follow-up photos are
    compared by them);
    a dark photo's boxes could not be checked by eye on the photo as sent, so it is drawn brightened."""
    response = fake_response(detections=[{"type": "papule", "score": 0.8, "box": [10, 10, 30, 30]}])
    dark = Image.new("RGB", (400, 300), (40, 30, 25))
    assert np.asarray(drawing.draw_detections(dark, response))[150, 200].tolist() == [40, 30, 25]
    assert "Analysed" not in drawing.caption_for(response) and "brightened" not in drawing.caption_for(response)

    response["analysed_at"] = "2026-11-28T05:40:12+01:00"
    response["image"]["brightened_by"] = 2.0
    caption = drawing.caption_for(response)
    assert caption.startswith("Analysed 2026-11-28 05:40+01:00. Severity grade 0 (mild): 1 lesion.")
    # When the photo was taken, where its EXIF says (a camera's clock: no offset), in the caption and the status.
    response["image"]["taken_at"] = "2026-10-01T14:22:05"
    assert drawing.caption_for(response).startswith("Taken 2026-10-01 14:22. Analysed 2026-11-28 05:40+01:00.")
    assert "Photo 400x300 px, taken 2026-10-01 14:22, " in render.status_markdown(response, "TorchServe", 100.0)
    assert "Drawn on the photo as brightened for the model." in caption
    assert np.asarray(drawing.draw_detections(dark, response))[150, 200].tolist() == [80, 60, 50]
    # The app's and the batch CLI's clock: the same form, now, with the offset.
    assert abs(datetime.fromisoformat(drawing.analysis_time()) - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_every_example_photo_is_labelled_with_the_lesions_acne04_marks_on_it():
    """The labels let a user hold the model's count against ACNE04's; a wrong number there would
    mislead, and an example without a label would show its file name."""
    import re
    import xml.etree.ElementTree as ET

    import app
    from tests.conftest import ACNE04_DATA

    examples = sorted(app.EXAMPLES_DIR.glob("*.jpg"))
    assert len(examples) == 4 and {p.name.split("_jpg")[0] for p in examples} == set(app.EXAMPLE_LABELS)
    if ACNE04_DATA is None:
        pytest.skip("the ACNE04 annotations are not on this machine")
    for photo in examples:
        label = app.EXAMPLE_LABELS[photo.name.split("_jpg")[0]]
        marked = len(ET.parse(ACNE04_DATA / "valid" / f"{photo.stem}.xml").getroot().findall("object"))
        grade, count = re.fullmatch(r"ACNE04 photo, grade (\d): (\d+) lesions? marked", label).groups()
        assert (int(grade), int(count)) == (int(photo.name[5]), marked), label


def test_the_local_model_is_loaded_once_and_analyses_one_photo_at_a_time(smoke_mar):
    """Several analyses at once (GRADIO_DEFAULT_CONCURRENCY_LIMIT) share one in-process model: two
    first requests must not load it twice, and its forward passes must not overlap."""
    import threading

    import backends  # space/backends.py

    backend = backends.LocalBackend(smoke_mar)
    start = threading.Barrier(3, timeout=120)
    loaded = []

    def load():
        start.wait()
        loaded.append(backend.load())

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(loaded) == 3 and all(detector is loaded[0] for detector in loaded)

    # The real detector's predict, its start and end recorded: the passes of four analyses started
    # together must follow one another.
    detector, spans = loaded[0], []
    real_predict = detector.predict

    def recorded_predict(*args, **kwargs):
        began = time.monotonic()
        try:
            return real_predict(*args, **kwargs)
        finally:
            spans.append((began, time.monotonic()))

    detector.predict = recorded_predict
    from tests.conftest import ACNE04_PHOTOS

    photo = ACNE04_PHOTOS[0].read_bytes()
    together = threading.Barrier(4, timeout=120)
    answers = []

    def analyse():
        together.wait()
        answers.append(backend.predict(photo, threshold=0.1))

    threads = [threading.Thread(target=analyse, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(answers) == 4 and len({answer["total"] for answer in answers}) == 1  # the same photo, the same answer
    spans.sort()
    assert len(spans) == 4
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans


def test_the_app_asks_the_torchserve_that_config_properties_names(tmp_path):
    """With the ports changed in config.properties (README: when another TorchServe runs on the machine),
    `make app` asked whatever answered on 8080. TS_CONFIG_FILE (set by make and .venv/bin/activate)
    names the address now; TROUBLE_API_URL still wins; without either, 8080."""
    config = tmp_path / "config.properties"
    config.write_text((REPO / "config.properties").read_text().replace("127.0.0.1:8080", "127.0.0.1:18080"))
    probe = "import sys; sys.path.insert(0, 'space'); import app; print(app.Analyzer.from_environment().server.client.url)"
    for ts_config, api_url, expected in ((str(config), "", "http://127.0.0.1:18080"),
                                         (str(config), "http://127.0.0.1:9999", "http://127.0.0.1:9999"),
                                         ("", "", "http://127.0.0.1:8080")):
        env = {**os.environ, "TS_CONFIG_FILE": ts_config, "TROUBLE_API_URL": api_url, "TROUBLE_MODE": "server"}
        result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.stdout.strip().splitlines()[-1] == expected, result.stderr[-2000:]
