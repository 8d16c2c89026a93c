"""The Gradio app: a face photo in; boxes per trouble type, counts, a severity grade and downloads out.

    python space/app.py          (from the repository root; `make app` does the same)

Where the answers come from, TROUBLE_MODE:
    server  TorchServe at TROUBLE_API_URL (default: the inference_address of TS_CONFIG_FILE, which `make`
            sets to config.properties; without it http://127.0.0.1:8080); TROUBLE_API_TOKEN, when set,
            is sent as "Authorization: Bearer ..."
    local   the inference core in this process (how a Gradio-SDK Space runs: no Java), on TROUBLE_MODEL
            (a .mar or a model folder; default model/trouble.mar beside this file, else the repository's
            model_store/trouble.mar) or on trouble.mar from the Hub model repo TROUBLE_MODEL_REPO
    auto    (default) the server, and the local model whenever the server does not answer;
            in a Hugging Face Space (SPACE_ID set) the default is local: a Gradio-SDK Space has no
            TorchServe, and the Docker Space's image sets server
The page says which one answered. Host and port: GRADIO_SERVER_NAME, GRADIO_SERVER_PORT
(default 127.0.0.1:7860).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

# Before gradio and huggingface_hub are imported: no analytics, no version check and no Hub calls
# (unless a Hub model repo was asked for). A value the user set wins.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if not os.environ.get("TROUBLE_MODEL_REPO"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Uploads (Gradio's cache) and results live in one private folder, removed when the app stops
# (Ctrl-C, or SIGTERM from docker stop or a Space restart: see main): they are patients' photos.
APP_TEMP_DIR = Path(tempfile.mkdtemp(prefix="trouble-app-"))
atexit.register(shutil.rmtree, APP_TEMP_DIR, ignore_errors=True)
if not os.environ.get("GRADIO_TEMP_DIR"):  # a folder the user chose is theirs to keep
    os.environ["GRADIO_TEMP_DIR"] = str(APP_TEMP_DIR / "uploads")


class SettingError(ValueError):
    """An environment variable the app cannot start with (the app exits 2 with this line)."""


def analyses_at_once() -> int:
    """GRADIO_DEFAULT_CONCURRENCY_LIMIT, Gradio's own variable: how many analyses run at once (1 by
    default). More than 1 suits a TorchServe with that many workers; the model in this process takes
    one photo at a time whatever it says (LocalBackend)."""
    value = os.environ.get("GRADIO_DEFAULT_CONCURRENCY_LIMIT") or "1"
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"GRADIO_DEFAULT_CONCURRENCY_LIMIT must be a whole number from 1 up, got {value!r}")
    return int(value)


def server_port() -> int:
    value = os.environ.get("GRADIO_SERVER_PORT") or "7860"
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SettingError(f"GRADIO_SERVER_PORT must be a port number (1-65535), got {value!r}")
    return int(value)


def exit_on_setting_error(read):
    """read(), or the app's start refused with one line and exit code 2."""
    try:
        return read()
    except SettingError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # gradio reads GRADIO_SERVER_PORT as it is imported, with a traceback if bad
    exit_on_setting_error(server_port)

APP_DIR = Path(__file__).resolve().parent
# In the repository the shared library is one folder up; in the Space it sits beside this file.
if (APP_DIR.parent / "trouble").is_dir():
    sys.path.insert(0, str(APP_DIR.parent))

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

import render  # noqa: E402
from backends import (DEFAULT_API_URL, AnalysisError, LocalBackend, ServerBackend,  # noqa: E402
                      ServerUnreachable, download_model, find_model_file)
from trouble.images import BadInput, decode_image, is_heic  # noqa: E402
from trouble.photo_checks import judge_photo  # noqa: E402
from trouble.server_client import address_problem  # noqa: E402

logger = logging.getLogger("trouble.app")

MODES = ("auto", "server", "local")
MAX_UPLOAD_MB = 20
# Gradio refuses a file above this itself, with a notice that passes; one between MAX_UPLOAD_MB and
# this is taken in, and refused in the status line, where the message stays (TorchServe's own
# request limit is 64 MiB).
UPLOAD_CEILING_MB = 64
EXAMPLES_DIR = APP_DIR / "examples"
# By file name: each photo's grade and how many lesions ACNE04 marks on it, to hold the model's count
# against (examples/README.md says how these typical photos were chosen).
EXAMPLE_LABELS = {"levle0_113": "ACNE04 photo, grade 0: 1 lesion marked",
                  "levle1_122": "ACNE04 photo, grade 1: 6 lesions marked",
                  "levle2_113": "ACNE04 photo, grade 2: 22 lesions marked",
                  "levle3_145": "ACNE04 photo, grade 3: 55 lesions marked"}
EXAMPLES_CREDIT = ("Example photos: [ACNE04](https://universe.roboflow.com/acne-vulgaris-detection/acne04-detection) "
                   "(Wu et al., ICCV 2019), Roboflow export, "
                   "[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/), unchanged.")
# Slicing: a request says on or off, or leaves it to the model's archive (`trouble.slicing`).
SLICING_CHOICES = [("The model's setting", "model"), ("On", "on"), ("Off", "off")]
SLICING_VALUES = [value for _, value in SLICING_CHOICES]
SLICING_HELP = ("Slices show the model a large photo piece by piece, at full resolution. On a face close-up they "
                "make lesions larger than the model was trained on, and it over-counts: the demo model's setting "
                "is off. Where the face is small in the photo, the demo model crops the photo to the face "
                "instead (its framing setting; the status line says so), which serves it better than slices "
                "(measured: docs/FIGURES.md in the project's repository).")
# Test-time augmentation, likewise: on, off, or the archive's `trouble.tta`.
TTA_CHOICES = [("The model's setting", "model"), ("On", "on"), ("Off", "off")]
TTA_VALUES = [value for _, value in TTA_CHOICES]
TTA_HELP = ("Runs the model several times on each photo (at two sizes, and mirrored) and fuses the boxes: "
            "for the demo model, about 3.5 times slower, its boxes ranked a little better, and its count "
            "worse: on the validation photos it over-counted by 3.5 on average (docs/FIGURES.md).")
# The corner buttons of the photos: no "share" (Gradio's posts the image to the Space's public
# discussions: a patient's face), no "download" (it saves "image.png"; the named downloads are below).
PHOTO_BUTTONS = ["fullscreen"]
# A visible keyboard focus on the button, its white text on a darker orange (5.2:1; Gradio's is 3.6:1,
# under WCAG's 4.5:1) and a darker one still while it runs, and help text dark enough to read
# (Gradio's grey is 1.9:1).
PAGE_CSS = ("#trouble-run:focus-visible { outline: 3px solid #000; outline-offset: 2px; }\n"
            "#trouble-run { background: #c2410c !important; border-color: #c2410c !important; color: #fff !important; }\n"
            "#trouble-run:hover { background: #9a3412 !important; }\n"
            # While it runs ("Analysing…"): Gradio fades a disabled button to 2.5:1; this stays 9:1.
            "#trouble-run:disabled { background: #7c2d12 !important; opacity: 1 !important; }\n"
            ".info-text { color: #4b4b55 !important; }\n.dark .info-text { color: #d0d0d8 !important; }")
BUTTON_LABEL, RUNNING_LABEL = render.BUTTON_LABEL, "Analysing…"
# After an answer, or a photo refused as soon as it is chosen: the status line takes the keyboard
# focus (the button it came from is disabled while it runs: focus fell to the page) and, on a phone,
# comes into view (it sits below the settings, a screen under the button). role=status, set when
# the page loads, has screen readers read what it says.
STATUS_ROLE_JS = "() => document.querySelector('#trouble-status')?.setAttribute('role', 'status')"
SHOW_STATUS_JS = """() => { const status = document.querySelector('#trouble-status');
    if (!status || !status.innerText.trim()) return;
    status.setAttribute('tabindex', '-1');
    status.focus({preventScroll: true});
    const box = status.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight - 80) status.scrollIntoView({block: 'start'}); }"""
# Results files are kept this long for the download buttons, then removed.
RESULTS_MAX_AGE_S = 3600


class Outputs(NamedTuple):
    """What the page shows for one analysis, in the order of build_app's output components."""
    annotated: object       # the photo with its boxes (PIL image)
    legend: str             # HTML: the colour of each type
    counts: list            # rows of (type, count), with the total
    severity: str           # Markdown: the grade, its scale, how far to trust it
    status: str             # Markdown: who answered, on what, in how long; or why there is no answer
    results_json: str | None
    annotated_png: str | None


class Analyzer:
    """Picks who answers (TorchServe or the local model) per TROUBLE_MODE and runs one photo."""

    def __init__(self, mode: str, server: ServerBackend, model_path: Path | None, model_repo: str | None):
        self.mode = mode
        self.server = server
        self.model_path = model_path
        self.model_repo = model_repo
        self._local: LocalBackend | None = None

    @classmethod
    def from_environment(cls) -> "Analyzer":
        default = "local" if os.environ.get("SPACE_ID") else "auto"
        mode = (os.environ.get("TROUBLE_MODE") or default).strip().lower()
        if mode not in MODES:
            raise SettingError(f"TROUBLE_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        url = os.environ.get("TROUBLE_API_URL") or configured_api_url()
        problem = address_problem(url) if mode != "local" else None  # local mode never uses it
        if problem:
            raise SettingError(f"TROUBLE_API_URL {problem}")
        server = ServerBackend(url, token=os.environ.get("TROUBLE_API_TOKEN") or None)
        return cls(mode, server, find_model_file(APP_DIR), os.environ.get("TROUBLE_MODEL_REPO") or None)

    @property
    def local_model_source(self) -> str | None:
        """The local model as the page names it: its file name (the folder it sits in on the server is
        no business of the page's; the log has the full path)."""
        if self.model_path is not None:
            return self.model_path.name
        if self.model_repo:
            return f"{self.model_repo} on the Hub"
        return None

    def describe(self) -> str:
        """One line for the page: where answers will come from."""
        local = self.local_model_source
        if self.mode == "server":
            return f"Answers come from {self.server.description}."
        if self.mode == "local":
            return f"Answers come from the model {local or '(none found)'}, run in this process."
        if local:
            return f"Answers come from {self.server.description}, or from the model {local} when it does not answer."
        return f"Answers come from {self.server.description} (no local model found to fall back on)."

    def health(self) -> str:
        """describe() plus, where a server is involved, whether it answers /ping right now."""
        if self.mode == "local":
            return self.describe()
        health = self.server.health()
        if health == "up":
            return f"{self.describe()} It is up."
        if health == "refuses the token":
            return (f"{self.describe()} **It is up but refuses this app's key**: set TROUBLE_API_TOKEN to the "
                    f"inference key in the server's key_file.json.")
        if self.mode == "auto" and self.local_model_source:
            return (f"{self.describe()} **It is not answering now**: the local model will answer "
                    f"(slower, in this process).")
        return (f"{self.describe()} **It is not answering now**: start it with `make serve`, or run the app "
                f"on a local model (TROUBLE_MODE=local, TROUBLE_MODEL=path/to/trouble.mar).")

    def local(self) -> LocalBackend:
        if self._local is None:
            path = self.model_path
            if path is None and self.model_repo:
                path = download_model(self.model_repo)
            if path is None:
                raise AnalysisError("No model file for local mode: set TROUBLE_MODEL to a .mar or model folder, "
                                    "or TROUBLE_MODEL_REPO to a Hub model repo holding trouble.mar.")
            if not path.exists():
                raise AnalysisError(f"The model file {path} does not exist (TROUBLE_MODEL).")
            self._local = LocalBackend(path)
        return self._local

    def predict(self, image_bytes: bytes, **options) -> tuple[dict, str]:
        """→ (response, who answered). Raises AnalysisError."""
        if self.mode == "local":
            backend = self.local()
            return backend.predict(image_bytes, **options), backend.description
        try:
            return self.server.predict(image_bytes, **options), self.server.description
        except ServerUnreachable:
            if self.mode == "server" or self.local_model_source is None:
                raise
        backend = self.local()
        # "(in this process, as TorchServe at ... did not answer) in 69.7 s": the time is the local model's.
        return (backend.predict(image_bytes, **options),
                backend.described_as(f"in this process, as {self.server.description} did not answer"))


def analyse(analyzer: Analyzer, photo_path, use_one_threshold, threshold, sliced, slice_size, tta="model"):
    """The page's one action → its Outputs. Never raises: a problem becomes a message in the status
    line, and the other outputs are emptied."""
    return analysed(analyzer, photo_path, use_one_threshold, threshold, sliced, slice_size, tta)[0]


def analysed_for_the_page(analyzer: Analyzer, photo_path, *settings):
    """The button's analysis, tagged for shown_if_current: (the photo, (its settings, what the model's
    settings meant in the answer), its Outputs)."""
    outputs, response = analysed(analyzer, photo_path, *settings)
    sliced, tta = settings[2], settings[4]
    return photo_path, (settings, model_settings_of(response, sliced, tta)), outputs


def analysed(analyzer: Analyzer, photo_path, use_one_threshold, threshold, sliced, slice_size, tta="model"):
    """→ (Outputs, the answer, or None when there is none)."""
    try:
        return _analyse(analyzer, photo_path, use_one_threshold, threshold, sliced, slice_size, tta)
    except AnalysisError as error:
        return _failure(str(error)), None
    except Exception:  # a bug: the details go to the log, never to the page
        logger.exception("analysis failed")
        return _failure("Something went wrong inside the app; its log has the details."), None


def _analyse(analyzer, photo_path, use_one_threshold, threshold, sliced, slice_size, tta):
    if not photo_path:
        raise AnalysisError("Choose a photo first: upload one, take one with the webcam, or click an example.")
    problem = size_problem(os.path.getsize(photo_path))
    if problem:
        raise AnalysisError(problem)
    if sliced not in SLICING_VALUES:
        raise AnalysisError(f"Sliced inference must be one of {', '.join(SLICING_VALUES)}; got {sliced!r}.")
    if tta not in TTA_VALUES:
        raise AnalysisError(f"Test-time augmentation must be one of {', '.join(TTA_VALUES)}; got {tta!r}.")
    image_bytes = Path(photo_path).read_bytes()
    _, threshold, _, slice_size, _ = settings_in_effect(use_one_threshold, threshold, sliced, slice_size, tta)
    started = time.perf_counter()
    response, answered_by = analyzer.predict(
        image_bytes, threshold=threshold, sliced=None if sliced == "model" else sliced == "on", slice_size=slice_size,
        tta=None if tta == "model" else tta == "on")
    round_trip_ms = (time.perf_counter() - started) * 1000.0
    try:
        shown = decode_image(image_bytes, max_side=render.DISPLAY_MAX_SIDE)
    except BadInput as error:  # the server accepted it, so this is unlikely; say so all the same
        raise AnalysisError(str(error)) from None
    if "warnings" not in response:  # from an archive made before answers carried them: judged here alike
        response["warnings"] = judge_photo(shown.rgb, response["settings"].get("framing", "none"),
                                           response["settings"].get("face_crop") or None,
                                           (response["image"]["width"], response["image"]["height"])).warnings
    response["analysed_at"] = render.analysis_time()  # the drawing's caption and the downloads' names carry it
    annotated = render.draw_detections(Image.fromarray(shown.rgb), response)  # its caption carries them too
    photo_name = Path(photo_path).name
    shown_text = {"severity": render.severity_markdown(response),
                  "status": render.status_markdown(response, answered_by, round_trip_ms, photo_name)}
    json_path, png_path = _save_downloads(response, answered_by, annotated, photo_name, shown_text)
    # Sizes, not the file's name: a name may be a patient's.
    logger.info("analysed a %dx%d photo: %d troubles in %.0f ms (%s)", response["image"]["width"],
                response["image"]["height"], response["total"], round_trip_ms, answered_by)
    return Outputs(annotated, render.legend_html(response), render.counts_rows(response), shown_text["severity"],
                   shown_text["status"], str(json_path), str(png_path)), response


def shown_if_current(answer, status, photo_path, *settings):
    """`answer` = (photo analysed, its settings as marked_for_settings takes them, its outputs) → None
    for the answer (it holds an image: not kept in the session once shown), the settings of what is
    shown, and the page's outputs. Nothing of it is shown when the page's photo is another one (its
    change already emptied the outputs): the status line says the analysis was dropped, unless it
    holds what is wrong with the new photo. The answer is marked as made with the settings before
    when they were changed while it ran."""
    if answer is None or answer[0] != photo_path:
        skipped = [gr.skip()] * len(Outputs._fields)
        if answer is not None and photo_path and not status:
            skipped[Outputs._fields.index("status")] = render.DROPPED_NOTE
        return gr.skip(), gr.skip(), *skipped
    outputs = Outputs(*answer[2])
    status, severity = marked_for_settings(answer[1], outputs.status, outputs.severity, *settings)
    return None, tuple(answer[1]), *outputs._replace(status=status, severity=severity)


def configured_api_url() -> str:
    """TorchServe's inference_address in the config it is started with (TS_CONFIG_FILE, which `make` and
    .venv/bin/activate set), else DEFAULT_API_URL: with the ports changed there, the app asked whatever
    answered on 8080, another person's TorchServe perhaps."""
    config = os.environ.get("TS_CONFIG_FILE")
    if not config:  # as in a Space
        return DEFAULT_API_URL
    try:
        from handler.wait_ready import config_value  # the repository's, one folder up
    except ImportError:
        return DEFAULT_API_URL
    return config_value("inference_address", DEFAULT_API_URL, config)


def marked_for_settings(shown_with, status, severity, *settings):
    """The status line and grade text after a setting changed: marked as made with other settings,
    or unmarked when the settings make the same analysis as the one shown. `shown_with` = (the
    settings it was made with, what "The model's setting" meant in it: model_settings_of)."""
    if shown_with is not None:
        made_with, model_settings = shown_with
        if settings_in_effect(*made_with, model=model_settings) == settings_in_effect(*settings, model=model_settings):
            return render.unmark_stale(status), render.unmark_stale(severity)
    return render.mark_stale(status), render.mark_stale(severity)


def settings_in_effect(use_one_threshold, threshold, sliced, slice_size, tta, model=None):
    """The settings as the analysis uses them (_analyse reads its threshold and slice size from here):
    the threshold counts only when its box is ticked, the slice size only when slicing is on. Moving an
    unused one changes no answer. With `model` (model_settings_of), "model" becomes what the model's
    setting was: "Off" after an answer made with the model's TTA, which is off, is the same analysis."""
    model = model or {}
    if sliced == "model" and "sliced" in model:
        sliced, slice_size = model["sliced"]
    if tta == "model" and "tta" in model:
        tta = model["tta"]
    return (use_one_threshold, float(threshold) if use_one_threshold else None, sliced,
            int(slice_size) if sliced == "on" else None, tta)


def model_settings_of(response, sliced, tta) -> dict:
    """What "The model's setting" meant in an answer (its `settings`), for the settings left at it:
    {"sliced": ("on", slice size) or ("off", None), "tta": "on" or "off"}; {} for a failure."""
    used = (response or {}).get("settings", {})
    model = {}
    if sliced == "model" and "sliced" in used:
        model["sliced"] = ("on", used.get("slice_size")) if used["sliced"] else ("off", None)
    if tta == "model" and "tta" in used:
        model["tta"] = "on" if used["tta"] else "off"
    return model


def _failure(message: str) -> Outputs:
    return _cleared(render.error_markdown(message))


def _cleared(status: str = "") -> Outputs:
    """The outputs emptied: a new photo must never sit beside the last photo's results."""
    return Outputs(None, "", [], "", status, None, None)


def size_problem(size: int) -> str:
    """Why a photo of `size` bytes is refused (empty, or too large), or "" when its size is fine."""
    if size == 0:  # not the server's "the request has no image": the file itself holds nothing
        return ("The file is empty (0 bytes): choose the photo again (a copy that did not finish, or a "
                "photo still in the cloud, gives such a file).")
    if size <= MAX_UPLOAD_MB * 1_000_000:  # MB as a file manager counts them (a 24,518,358-byte file: 24.5 MB)
        return ""
    return f"The photo is {size / 1_000_000:.1f} MB; the limit is {MAX_UPLOAD_MB} MB. Send a smaller copy."


def photo_problem(photo_path) -> str:
    """A photo just chosen, checked at once as the analysis will read it: "" when it can be analysed,
    else the message (a text file named .jpg showed as a broken picture until the button was pressed)."""
    if not photo_path:
        return ""
    try:
        problem = size_problem(os.path.getsize(photo_path))
        if problem:
            return render.error_markdown(problem)
        decode_image(Path(photo_path).read_bytes(), max_side=256)  # small: a check, not the analysis
    except BadInput as error:
        return render.error_markdown(str(error))
    except OSError as error:
        return render.error_markdown(f"The file cannot be read ({error.strerror or error}).")
    return ""


def heic_preview(photo_path) -> str | None:
    """A HEIC (an iPhone's photo), which browsers other than Safari cannot show, as a JPEG for the photo
    box: upright, at most render.DISPLAY_MAX_SIDE px. None for any other file, or where it cannot be
    written (the box then shows a broken picture, and the analysis is as good). Written beside the
    upload in Gradio's cache, where Gradio leaves a file as it is (the photo's value is then this very
    path) and deletes it with the upload; written whole, then renamed, as two visitors who upload the
    same file share its place in the cache."""
    path = Path(photo_path)
    preview = path.with_name(f"{path.name}.preview.jpg")
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
    try:
        with path.open("rb") as file:
            if not is_heic(file.read(12)):
                return None
        shown = decode_image(path.read_bytes(), max_side=render.DISPLAY_MAX_SIDE)
        Image.fromarray(shown.rgb).save(partial, format="JPEG", quality=90)
        os.replace(partial, preview)
    except (OSError, BadInput):
        partial.unlink(missing_ok=True)
        return None
    return str(preview)


def shown_as_preview(photo_path):
    """photo.upload → (the photo box's value, heic_shown): for a HEIC, its preview and (the preview, the
    HEIC), which the analysis then reads (the_original); for any other file, the file as it is and None.
    That file is given back rather than gr.skip(): an update of the photo's properties (which gr.skip()
    is) makes Gradio rebuild the field for the session as a plain gr.Image, without photo_input's
    reading, and a file that is no photo then gave a bare "Error"."""
    preview = heic_preview(photo_path) if photo_path else None
    return (preview, (preview, photo_path)) if preview else (photo_path, None)


def the_original(photo_path, heic_shown):
    """The file the page's analysis reads: the photo's, or the HEIC whose preview the photo box shows."""
    return heic_shown[1] if heic_shown and photo_path == heic_shown[0] else photo_path


RESULTS_DIR = APP_TEMP_DIR / "results"


def _save_downloads(response: dict, answered_by: str, annotated, photo_name: str,
                    shown_text: dict) -> tuple[Path, Path]:
    """Write the results JSON and the annotated PNG into a folder of their own, named after the
    photo and the time of the analysis, so that downloads of several photos cannot be mixed up.
    The JSON keeps what the page said beside the answer (`shown_text`: the grade's text, with its
    range and warnings, and the status line), which the answer alone does not hold."""
    _remove_old_results()
    folder = RESULTS_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True)
    stem = f"{Path(photo_name).stem}-trouble-{datetime.fromisoformat(response['analysed_at']):%Y%m%d-%H%M%S}"
    json_path, png_path = folder / f"{stem}.json", folder / f"{stem}.png"
    json_path.write_text(json.dumps({"photo": photo_name, **response,
                                     "answered_by": answered_by, "shown_on_the_page": shown_text}, indent=2))
    annotated.save(png_path, format="PNG")
    return json_path, png_path


def _remove_old_results():
    if not RESULTS_DIR.is_dir():
        return
    cutoff = time.time() - RESULTS_MAX_AGE_S
    for folder in RESULTS_DIR.iterdir():
        try:
            old = folder.is_dir() and folder.stat().st_mtime < cutoff
        except FileNotFoundError:  # removed meanwhile by another analysis (several may run at once)
            continue
        if old:
            shutil.rmtree(folder, ignore_errors=True)


def photo_input(**kwargs) -> gr.Image:
    """A gr.Image whose value is the uploaded file untouched: its exact bytes go to the server, and a
    file that is not a usable photo (an iPhone HEIC, a PDF) gets the inference core's message instead
    of a bare Gradio "Error", which is what gr.Image's own preprocess (it opens the file with PIL) gives.

    Set on the instance rather than in a gr.Image subclass: Gradio writes a .pyi stub file beside the
    module of every component subclass, at import time."""
    # Not mirrored: a mirrored capture would swap the patient's left and right in the saved photo.
    image = gr.Image(type="filepath", image_mode=None, webcam_options=gr.WebcamOptions(mirror=False),
                     buttons=PHOTO_BUTTONS, **kwargs)
    gradio_preprocess = image.preprocess

    def preprocess(payload):
        if payload is None or (payload.url and payload.url.startswith("data:")):  # a webcam frame inline
            return gradio_preprocess(payload)
        return payload.path

    image.preprocess = preprocess
    return image


def build_app(analyzer: Analyzer) -> gr.Blocks:
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    with gr.Blocks(title="Skin trouble detector", analytics_enabled=False,
                   delete_cache=(RESULTS_MAX_AGE_S, RESULTS_MAX_AGE_S)) as app:
        gr.Markdown("# Skin trouble detector\n"
                    "Finds acne lesions in a face photo, counts them per type and grades the severity "
                    "(Hayashi scale). A research demo, not a medical device. 1: choose a photo (upload, webcam "
                    f"or an example below); 2: press **{BUTTON_LABEL}**. The webcam needs a camera and, when the "
                    "app runs on another computer, an https address.")
        mode_line = gr.Markdown(analyzer.describe(), elem_id="trouble-mode")
        with gr.Row():
            with gr.Column(scale=1):
                photo = photo_input(label=f"Photo: JPEG, PNG, WebP or HEIC, up to {MAX_UPLOAD_MB} MB",
                                    sources=["upload", "webcam"], height=420, elem_id="trouble-photo")
                # Right under the photo, so that on a phone they are not a screen below the button.
                if examples:
                    # A Dataset whose click sets the photo's value, not gr.Examples: its click sends the
                    # field's settings too, and Gradio then replaces the page's photo field with a plain
                    # gr.Image for the session, without photo_input's reading (a file that is no photo
                    # then gave a bare "Error" everywhere).
                    example_photos = gr.Dataset(
                        components=[photo], samples=[[str(path)] for path in examples], type="index",
                        sample_labels=[EXAMPLE_LABELS.get(p.name.split("_jpg")[0], p.stem) for p in examples],
                        label="Example photos")
                    example_photos.click(lambda index: str(examples[index]), inputs=example_photos, outputs=photo,
                                         queue=False, api_visibility="private")
                    gr.Markdown(EXAMPLES_CREDIT)
                # Above the settings, which are optional: on a phone it was two screens below the photo.
                button = gr.Button(BUTTON_LABEL, variant="primary", elem_id="trouble-run")
                # Open from the start: opened by the user before the page's load event (the health
                # line) had answered, Gradio 6.31 reset a threshold typed into it to 0.30.
                with gr.Accordion("Settings", open=True):
                    use_one_threshold = gr.Checkbox(
                        value=False, label="One score threshold for every type "
                                           "(unticked: the model's own threshold per type)",
                        elem_id="trouble-one-threshold")
                    threshold = gr.Slider(0.05, 0.95, value=0.3, step=0.05, label="Score threshold",
                                          info="Used only when the box above is ticked; the status line shows the "
                                               "thresholds an answer used. Higher: fewer, surer lesions.",
                                          elem_id="trouble-threshold")
                    sliced = gr.Radio(SLICING_CHOICES, value="model", label="Sliced inference (SAHI)",
                                      info=SLICING_HELP, elem_id="trouble-sliced")
                    slice_size = gr.Slider(128, 2048, value=640, step=32, label="Slice size (pixels), when on",
                                           elem_id="trouble-slice-size")
                    tta = gr.Radio(TTA_CHOICES, value="model", label="Test-time augmentation", info=TTA_HELP,
                                   elem_id="trouble-tta")
            with gr.Column(scale=1):
                status = gr.Markdown(elem_id="trouble-status")
                annotated = gr.Image(label="Detections", type="pil", format="png", interactive=False,
                                     buttons=PHOTO_BUTTONS, elem_id="trouble-annotated")
                legend = gr.HTML(elem_id="trouble-legend")
                counts = gr.Dataframe(headers=["Type", "Count"], datatype=["str", "number"], interactive=False,
                                      label="Counts", elem_id="trouble-counts")
                severity = gr.Markdown(elem_id="trouble-severity")
                with gr.Row():
                    results_json = gr.File(label="Results (JSON)", elem_id="trouble-json")
                    annotated_png = gr.File(label="Annotated photo (PNG: the photo at most 2048 px, a caption below "
                                                  "it; boxes in the JSON are in the photo's own pixels)",
                                            elem_id="trouble-png")
        app.load(analyzer.health, outputs=mode_line, api_visibility="private")
        app.load(None, js=STATUS_ROLE_JS)
        # Moving the slider means the user wants that threshold: tick the box for them.
        threshold.input(lambda: True, outputs=use_one_threshold, api_visibility="private")
        outputs = list(Outputs(annotated=annotated, legend=legend, counts=counts, severity=severity, status=status,
                               results_json=results_json, annotated_png=annotated_png))  # components, by name
        inputs = [photo, use_one_threshold, threshold, sliced, slice_size, tta]
        # The button analyses into `answer`, tagged with the photo and settings it was made for; the
        # step after shows it only if that photo is still the one on the page. Another photo chosen
        # while an analysis runs never gets its answer (cancelling the analysis instead raced with a
        # click made right after an upload, and cancelled the new photo's own analysis).
        # While it runs the button says so and takes no second click (which would queue behind it).
        answer = gr.State()
        shown_with = gr.State()  # the settings the answer on the page was made with (marked_for_settings)
        heic_shown = gr.State()  # (the preview shown, the HEIC uploaded) after a HEIC upload: shown_as_preview
        settings = inputs[1:]
        analysis = button.click(
            lambda: gr.Button(RUNNING_LABEL, interactive=False), outputs=button, queue=False, api_visibility="private"
        ).then(lambda photo_path, heic, *settings: analysed_for_the_page(analyzer, the_original(photo_path, heic),
                                                                         *settings),
               inputs=[photo, heic_shown, *settings], outputs=answer, show_progress_on=[status, annotated],
               concurrency_id="analysis", api_visibility="private")
        analysis.success(lambda answer, status, photo_path, heic, *settings:
                         shown_if_current(answer, status, the_original(photo_path, heic), *settings),
                         inputs=[answer, status, photo, heic_shown, *settings], outputs=[answer, shown_with, *outputs],
                         queue=False, api_visibility="private").then(None, js=SHOW_STATUS_JS)
        analysis.then(lambda: gr.Button(BUTTON_LABEL, interactive=True), outputs=button, queue=False,
                      api_visibility="private")
        # The line at the top said "It is up" from the page's load on: asked again after each analysis,
        # it does not contradict a status line that says the server stopped answering.
        analysis.then(analyzer.health, outputs=mode_line, api_visibility="private")
        # Another photo (upload, webcam, example, cleared): the last photo's results go at once, and a
        # file that is no usable photo is named right away. A quick check: no progress shown (after an
        # upload it runs twice, the second time when shown_as_preview gives the photo back).
        photo.change(lambda path: _cleared(photo_problem(path)), inputs=photo, outputs=outputs,
                     api_visibility="private", queue=False, show_progress="hidden").then(None, js=SHOW_STATUS_JS)
        # An uploaded HEIC is shown as a JPEG preview (shown_as_preview). On upload only, not on every
        # change: setting the photo's value is a change too.
        photo.upload(shown_as_preview, inputs=photo, outputs=[photo, heic_shown], api_visibility="private",
                     queue=False)
        # For programs (gradio_client, "Use via API"): the same analysis, its outputs in one call.
        gr.Button(visible=False).click(lambda *args: analyse(analyzer, *args), inputs=inputs, outputs=outputs,
                                       concurrency_id="analysis", api_name="analyse")
        # Other settings: the results stay, marked as made with the settings before (the grade too: on a
        # phone it is a screen away from the status line); the mark goes when the settings are put back.
        for setting in settings:
            setting.change(marked_for_settings, inputs=[shown_with, status, severity, *settings],
                           outputs=[status, severity], api_visibility="private", queue=False)
    return app


def main():
    # SIGTERM ends Python without its exit handlers: make it an ordinary exit, so APP_TEMP_DIR goes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    analyzer = exit_on_setting_error(Analyzer.from_environment)
    at_once = exit_on_setting_error(analyses_at_once)
    logger.info("%s", analyzer.describe())
    if analyzer.mode == "local":
        try:
            analyzer.local().load()  # now rather than on the first photo
        except (AnalysisError, ImportError, OSError, ValueError) as error:
            logger.error("%s", error)  # the page shows it again on each request
    app = build_app(analyzer)
    app.queue(default_concurrency_limit=at_once)
    host, port = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), server_port()
    try:
        app.launch(server_name=host, server_port=port,
                   max_file_size=f"{UPLOAD_CEILING_MB}mb", show_error=False, ssr_mode=False,
                   footer_links=["api", "gradio"], allowed_paths=[str(EXAMPLES_DIR)], css=PAGE_CSS)
    except OSError as error:  # a port in use (another app, an earlier one still running), a host not here
        print(f"error: the app cannot listen on {host}:{port} (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT): {error}",
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C while the model or the server starts: no traceback through gradio
        print("interrupted: the app was stopped before it started", file=sys.stderr)
        sys.exit(130)
