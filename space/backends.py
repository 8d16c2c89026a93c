"""Where the app's answers come from: TorchServe over HTTP, or the inference core in this process.

Both return the same response dict. Anything that goes wrong becomes an `AnalysisError` whose
message is written for the person using the page (the technical details go to the log).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from trouble import server_client
from trouble.images import BadInput
from trouble.server_client import DEFAULT_URL as DEFAULT_API_URL
from trouble.server_client import ServerFailed, ServerRefused, ServerTimeout, TorchServeClient

logger = logging.getLogger("trouble.app")
MODEL_FILE_IN_REPO = "trouble.mar"


class AnalysisError(Exception):
    """A message for the page: why there is no result, and what to do about it."""


class ServerUnreachable(AnalysisError):
    """Nothing answers at the TorchServe address (the app may fall back to local mode): the page's
    wording of server_client.ServerUnreachable."""


class ServerBackend:
    """The photo to TorchServe (trouble/server_client.py), its failures worded for the page."""

    def __init__(self, url: str = DEFAULT_API_URL, token: str | None = None):
        self.client = TorchServeClient(url, token=token)

    @property
    def description(self) -> str:
        return f"TorchServe at {self.client.url}"

    def health(self) -> str:
        """"up", "refuses the token" or "down" (see TorchServeClient.ping)."""
        answer = self.client.ping()
        return answer if answer in ("up", "refuses the token") else "down"

    def predict(self, image_bytes: bytes, threshold=None, sliced=None, slice_size=None, tta=None) -> dict:
        try:
            return self.client.predict(image_bytes, score_threshold=threshold, sliced=sliced,
                                       slice_size=slice_size, tta=tta)
        except server_client.ServerUnreachable as error:
            logger.warning("%s", error)
            raise ServerUnreachable(
                f"The inference server ({self.description}) is not answering. Start it with `make serve`, "
                f"or run the app on a local model: TROUBLE_MODE=local TROUBLE_MODEL=path/to/trouble.mar.") from None
        except ServerTimeout:
            raise AnalysisError(f"The inference server ({self.description}) did not answer within "
                                f"{self.client.timeout_s:.0f} s. Try a smaller photo or turn sliced inference "
                                f"off.") from None
        except BadInput as error:
            if error.code == "too_large" and error.http_status == 413:
                raise AnalysisError("The photo is larger than the inference server accepts (HTTP 413): send a "
                                    "smaller one.") from None
            raise AnalysisError(str(error)) from None  # the inference core's own message
        except ServerRefused as error:
            logger.warning("%s", error)
            if error.reason == "token":
                raise AnalysisError("The inference server refused the request (no key, or the wrong one): set "
                                    "TROUBLE_API_TOKEN to the inference key in its key_file.json.") from None
            raise AnalysisError(f"{self.description} has no model named '{self.client.model_name}' loaded "
                                f"(HTTP 404).") from None
        except ServerFailed as error:
            logger.warning("%s", error)
            if error.status == 503:
                raise AnalysisError("The inference server is busy or its model is still loading (HTTP 503). "
                                    "Try again in a moment.") from None
            # e.g. TorchServe's "Worker died." after a crash or a timeout
            raise AnalysisError(f"The inference server could not analyse the photo ({error}). The server's "
                                f"log has the details.") from None


class LocalBackend:
    """The inference core in this process (how a Gradio-SDK Space runs: no Java, no TorchServe).

    The model is loaded on first use and kept; a lock keeps two first requests from loading it twice.
    Photos go through it one at a time, also when the app runs several analyses at once: the model
    already uses every core, and its forward pass is not known to be thread-safe.
    """

    def __init__(self, model_path: Path):
        self.model_path = Path(model_path)
        self._detector = None
        self._lock = threading.Lock()
        self._one_photo_at_a_time = threading.Lock()

    @property
    def description(self) -> str:
        return self.described_as("in this process")

    def described_as(self, how: str) -> str:
        return f"the local model {self.model_path.name} ({how})"

    def load(self):
        with self._lock:
            if self._detector is None:
                from trouble.inference import TroubleDetector

                logger.info("loading %s", self.model_path)
                self._detector = TroubleDetector.from_path(self.model_path)
        return self._detector

    def predict(self, image_bytes: bytes, threshold=None, sliced=None, slice_size=None, tta=None) -> dict:
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
            with self._one_photo_at_a_time:
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
