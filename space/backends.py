"""Where the app's answers come from: TorchServe over HTTP, or the inference core in this process.

Both return the same response dict. Anything that goes wrong becomes an `AnalysisError` whose
message is written for the person using the page (the technical details go to the log).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import requests

logger = logging.getLogger("trouble.app")

DEFAULT_API_URL = "http://127.0.0.1:8080"
MODEL_NAME = "trouble"
# CPU inference of a 12 MP photo in slices can take a minute; past this the page gives up. Longer
# than TorchServe's own default_response_timeout (300 s, config.properties), so that an answer
# TorchServe gives at its timeout reaches the page instead of being cut off by ours.
REQUEST_TIMEOUT_S = 330
MODEL_FILE_IN_REPO = "trouble.mar"


class AnalysisError(Exception):
    """A message for the page: why there is no result, and what to do about it."""


class ServerUnreachable(AnalysisError):
    """Nothing answers at the TorchServe address (the app may fall back to local mode)."""


class ServerBackend:
    """POST the photo to TorchServe's /predictions/trouble (the handler in handler/trouble_handler.py)."""

    def __init__(self, url: str = DEFAULT_API_URL, token: str | None = None, timeout: float = REQUEST_TIMEOUT_S):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def description(self) -> str:
        return f"TorchServe at {self.url}"

    def health(self) -> str:
        """"up" (GET /ping says Healthy; its model may still be loading), "refuses the token" (TorchServe's
        token authorisation wants /ping's key too), or "down"."""
        try:
            reply = requests.get(f"{self.url}/ping", headers=self.headers, timeout=3)
            body = reply.json()
        except (requests.RequestException, ValueError):
            return "down"
        if not isinstance(body, dict):
            return "down"
        if refuses_the_key(reply, body):
            return "refuses the token"
        return "up" if reply.status_code == 200 and body.get("status") == "Healthy" else "down"

    def predict(self, image_bytes: bytes, threshold=None, sliced=None, slice_size=None, tta=None) -> dict:
        # Multipart: the photo as a file field, the options as form fields. TorchServe 0.12 drops the
        # query string of a request whose body is the raw photo, so query parameters would be ignored.
        options = {name: str(value) for name, value in
                   (("threshold", threshold), ("sliced", _as_form_value(sliced)), ("slice_size", slice_size),
                    ("tta", _as_form_value(tta)))
                   if value is not None}
        try:
            reply = requests.post(f"{self.url}/predictions/{MODEL_NAME}", headers=self.headers, data=options,
                                  files={"data": ("photo", image_bytes, "application/octet-stream")},
                                  timeout=self.timeout)
        except requests.ConnectionError as error:
            logger.warning("TorchServe at %s not reachable: %s", self.url, error)
            raise ServerUnreachable(
                f"The inference server ({self.description}) is not answering. Start it with `make serve`, "
                f"or run the app on a local model: TROUBLE_MODE=local TROUBLE_MODEL=path/to/trouble.mar.") from None
        except requests.Timeout:
            raise AnalysisError(f"The inference server ({self.description}) did not answer within "
                                f"{self.timeout:.0f} s. Try a smaller photo or turn sliced inference off.") from None
        return _read_reply(reply, self.description)


def _as_form_value(value):
    if value is None:
        return None
    return "true" if value else "false"


def refuses_the_key(reply: requests.Response, body) -> bool:
    """TorchServe 0.12's token authorisation answers a missing or wrong key with 400 InvalidKeyException."""
    return reply.status_code in (401, 403) or (isinstance(body, dict) and body.get("type") == "InvalidKeyException")


def _read_reply(reply: requests.Response, who: str) -> dict:
    """TorchServe's answer → the response dict, or an AnalysisError with the server's own message."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if reply.status_code == 200 and isinstance(body, dict) and "detections" in body:
        return body
    message = (body.get("error") or body.get("message")) if isinstance(body, dict) else None
    logger.warning("%s answered HTTP %s: %s", who, reply.status_code, (reply.text or "")[:500])
    if refuses_the_key(reply, body):
        raise AnalysisError(f"The inference server refused the request (HTTP {reply.status_code}: no key, or "
                            f"the wrong one): set TROUBLE_API_TOKEN to the inference key in its key_file.json.")
    if reply.status_code == 413:  # TorchServe's own size limit; the app's upload limit is lower
        raise AnalysisError("The photo is larger than the inference server accepts (HTTP 413): send a smaller "
                            "one.")
    if reply.status_code == 404:
        raise AnalysisError(f"{who} has no model named '{MODEL_NAME}' loaded (HTTP 404).")
    if reply.status_code == 503:
        raise AnalysisError("The inference server is busy or its model is still loading (HTTP 503). "
                            "Try again in a moment.")
    if 400 <= reply.status_code < 500 and message:
        raise AnalysisError(str(message))  # the inference core's own BadInput message
    said = f": {message}" if message else ""  # e.g. TorchServe's "Worker died." after a crash or a timeout
    raise AnalysisError(f"The inference server could not analyse the photo (HTTP {reply.status_code}{said}). "
                        f"The server's log has the details.")


class LocalBackend:
    """The inference core in this process (how a Gradio-SDK Space runs: no Java, no TorchServe).

    The model is loaded on first use and kept; a lock keeps two first requests from loading it twice.
    """

    def __init__(self, model_path: Path):
        self.model_path = Path(model_path)
        self._detector = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"the local model {self.model_path.name} (in this process)"

    def load(self):
        with self._lock:
            if self._detector is None:
                from trouble.inference import TroubleDetector

                logger.info("loading %s", self.model_path)
                self._detector = TroubleDetector.from_path(self.model_path)
        return self._detector

    def predict(self, image_bytes: bytes, threshold=None, sliced=None, slice_size=None, tta=None) -> dict:
        from trouble.images import BadInput

        try:
            detector = self.load()
        except ImportError as error:
            logger.exception("the inference packages are missing")
            raise AnalysisError(f"Local mode needs the inference packages (torch, mmcv, mmdet, sahi), and "
                                f"{error.name or 'one of them'} is not installed here.") from None
        except (OSError, ValueError) as error:
            logger.exception("could not load %s", self.model_path)
            raise AnalysisError(f"The model {self.model_path} could not be loaded: {error}") from None
        try:
            return detector.predict(image_bytes, score_threshold=threshold, sliced=sliced, slice_size=slice_size,
                                    tta=tta)
        except BadInput as error:
            raise AnalysisError(str(error)) from None


def find_model_file(app_dir: Path) -> Path | None:
    """The model for local mode: TROUBLE_MODEL, else model/trouble.mar beside the app (the Space's
    layout), else the repository's model_store/trouble.mar, else None.
    TROUBLE_MODEL_REPO (a Hub model repo) is handled by `download_model`."""
    if os.environ.get("TROUBLE_MODEL"):
        return Path(os.environ["TROUBLE_MODEL"]).expanduser()
    for candidate in (app_dir / "model" / MODEL_FILE_IN_REPO, app_dir.parent / "model_store" / MODEL_FILE_IN_REPO):
        if candidate.exists():
            return candidate
    return None


def download_model(repo_id: str, filename: str = MODEL_FILE_IN_REPO) -> Path:
    """Fetch the .mar from a Hub model repo (cached by huggingface_hub; HF_TOKEN for private repos)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as error:  # network, authorisation or missing file: all end in the same message
        logger.exception("could not download %s from %s", filename, repo_id)
        raise AnalysisError(f"Could not download {filename} from the Hub model repo {repo_id}: "
                            f"{type(error).__name__}. Check TROUBLE_MODEL_REPO and HF_TOKEN.") from None
