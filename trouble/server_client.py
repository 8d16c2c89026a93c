"""TorchServe's inference API, as the batch CLI and the app both call it.

One client, so that a photo sent by `handler/predict_folder.py --server` and one sent by the app
travel the same way and fail the same way. Each caller words the failures for its own reader.

The photo goes as a multipart file field and the options as form fields: TorchServe 0.12 drops
the query string of a request whose body is the raw photo, so query parameters would be ignored.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import requests

from trouble.images import BadInput

DEFAULT_URL = "http://127.0.0.1:8080"
MODEL_NAME = "trouble"
# CPU inference of a 12 MP photo in slices can take a minute. Longer than TorchServe's own
# default_response_timeout (300 s, config.properties), so that an answer TorchServe gives at its
# timeout reaches the caller instead of being cut off here.
TIMEOUT_S = 330
# TorchServe's max_request_size in this repository's config.properties.
SERVER_MAX_REQUEST_MIB = 64


class ServerUnreachable(ConnectionError):
    """Nothing answers at the address."""


class ServerTimeout(TimeoutError):
    """The server took the photo but gave no answer in time."""


class ServerRefused(RuntimeError):
    """TorchServe refused the request itself (`reason`: "token" or "no_model"): every photo would
    fail alike, so callers stop rather than try the next one."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class ServerFailed(RuntimeError):
    """Any other failed answer: `status` is its HTTP status (503: busy or still loading), None where
    the answer itself broke off."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


def address_problem(url: str) -> str | None:
    """What is wrong with a TorchServe address as a user typed it, else None: the app and the batch
    CLI check it before the first call, where requests would call a mistyped address unreachable and
    send people to look at a server that is running."""
    if not url.startswith(("http://", "https://")):
        return f"must start with http:// or https://, e.g. http://{url.split('://', 1)[-1]}"  # ftp://x: http://x
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it)
    except ValueError as error:
        return f"{url} is not a valid address ({error})"
    if not parts.hostname:
        return f"{url} names no host, e.g. {DEFAULT_URL}"
    return None


def refuses_the_key(status: int, body) -> bool:
    """TorchServe 0.12's token authorisation answers a missing or wrong key with 400 InvalidKeyException."""
    return status in (401, 403) or (isinstance(body, dict) and body.get("type") == "InvalidKeyException")


def _form_value(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class TorchServeClient:
    """POST a photo to /predictions/trouble (the handler in handler/trouble_handler.py) → the
    inference core's response dict, the same as `TroubleDetector.predict` returns in process."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, model_name: str = MODEL_NAME,
                 timeout_s: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.predictions_url = f"{self.url}/predictions/{model_name}"
        self.model_name = model_name
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s

    def ping(self) -> str:
        """"up" (GET /ping says Healthy; its model may still be loading), "refuses the token"
        (TorchServe's token authorisation wants /ping's key too), "no ping" (a server without
        /ping: TorchServe's management address, say), "unhealthy" or "unreachable"."""
        try:
            reply = requests.get(f"{self.url}/ping", headers=self.headers, timeout=3)
        except requests.RequestException:
            return "unreachable"
        try:
            body = reply.json()
        except ValueError:
            return "unhealthy"
        if refuses_the_key(reply.status_code, body):
            return "refuses the token"
        if reply.status_code == 404:
            return "no ping"
        healthy = reply.status_code == 200 and isinstance(body, dict) and body.get("status") == "Healthy"
        return "up" if healthy else "unhealthy"

    def predict(self, image_bytes: bytes, score_threshold=None, sliced=None, slice_size=None, framing=None,
                tta=None) -> dict:
        """The options of TroubleDetector.predict; None is the model's own. Raises ServerUnreachable,
        ServerTimeout, ServerRefused, ServerFailed, or BadInput (the handler's refusal, with its code)."""
        options = {name: _form_value(value) for name, value in
                   (("threshold", score_threshold), ("sliced", sliced), ("slice_size", slice_size),
                    ("framing", framing), ("tta", tta)) if value is not None}
        try:
            reply = requests.post(self.predictions_url, headers=self.headers, data=options,
                                  files={"data": ("photo", image_bytes, "application/octet-stream")},
                                  timeout=self.timeout_s)
        except requests.ConnectionError as error:
            raise ServerUnreachable(f"TorchServe is not answering at {self.url} (is it running? "
                                    f"`make serve`)") from error
        except requests.Timeout:
            raise ServerTimeout(f"TorchServe at {self.url} gave no answer within {self.timeout_s:.0f} s") from None
        except requests.RequestException as error:  # e.g. the answer cut off as the worker died
            raise ServerFailed(None, f"TorchServe at {self.url}: {type(error).__name__}: {error}") from None
        return self._read(reply, len(image_bytes))

    def _read(self, reply: requests.Response, photo_bytes: int) -> dict:
        try:
            body = reply.json()
        except ValueError:
            body = None
        if reply.status_code == 200 and isinstance(body, dict) and "detections" in body:
            return body
        said = (body.get("error") or body.get("message")) if isinstance(body, dict) else None
        message = f"server answered {reply.status_code}: {said or (reply.text or '')[:200]}"
        if isinstance(body, dict) and isinstance(body.get("code"), str):  # the handler's refusal, with its code
            raise BadInput(body["code"], str(said or message), reply.status_code)
        if refuses_the_key(reply.status_code, body):
            raise ServerRefused("token", f"{message}. Set TROUBLE_API_TOKEN to the inference key in the "
                                         f"server's key_file.json")
        if reply.status_code == 413:  # TorchServe's own size limit, before the handler sees the photo
            raise BadInput("too_large", f"The photo is {photo_bytes / 2**20:.1f} MiB, more than the server "
                                        f"accepts (TorchServe's max_request_size: {SERVER_MAX_REQUEST_MIB} MiB "
                                        f"in this repository's config.properties)", 413)
        if reply.status_code == 404:
            raise ServerRefused("no_model", f"{message} (is a model registered as '{self.model_name}'?)")
        raise ServerFailed(reply.status_code, message)
