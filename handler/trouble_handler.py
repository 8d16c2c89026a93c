"""TorchServe handler: photo bytes in, detections with per-type counts and a severity grade out.

It overrides only initialize, preprocess, inference and postprocess; the work itself is done
by the shared inference core (trouble.inference), which the .mar carries beside this file.

Request: POST /predictions/trouble with the image as the raw body or as a multipart field
(any name). Options, as multipart form fields or as headers (TorchServe 0.12 does not pass
query strings to handlers): threshold / X-Trouble-Threshold (0..1, all types),
sliced / X-Trouble-Sliced (true/false), slice_size / X-Trouble-Slice-Size (128..2048),
framing / X-Trouble-Framing (face/none), tta / X-Trouble-TTA (true/false: test-time augmentation).
Any other form field or X-Trouble-* header is refused (a misspelt option would otherwise be
ignored in silence). A bad request gets HTTP 4xx with {"error": "...", "code": "..."}; a photo the
model fails on gets 500 with code "internal_error". Either way the other requests of its batch
are answered and the worker stays up.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ts.torch_handler.base_handler import BaseHandler

from trouble.images import ACCEPTED, BadInput, looks_like_image
from trouble.inference import TroubleDetector

logger = logging.getLogger(__name__)

OPTION_NAMES = ("threshold", "sliced", "slice_size", "framing", "tta")
# The same options as request headers, for raw-body requests.
OPTION_HEADERS = {f"x-trouble-{name.replace('_', '-')}": name for name in OPTION_NAMES}


class TroubleHandler(BaseHandler):
    def initialize(self, context):
        model_dir = Path(context.system_properties.get("model_dir"))
        gpu_id = context.system_properties.get("gpu_id")
        import torch

        device = f"cuda:{gpu_id}" if torch.cuda.is_available() and gpu_id is not None else "cpu"
        self.detector = TroubleDetector(model_dir, device=device)
        logger.info("trouble model loaded from %s on %s: classes %s", model_dir, device, self.detector.classes)
        self.initialized = True

    def preprocess(self, data):
        """Each request → (decoded image and options) or the BadInput that refuses it."""
        requests = []
        for index, row in enumerate(data):
            try:
                image_bytes, options = _split_request(row)
                headers = self.context.get_all_request_header(index) or {}
                from_header = {}  # option → the header it came as, for a refusal to name
                for name, value in headers.items():
                    name = str(name).lower()
                    if name in OPTION_HEADERS:
                        option = OPTION_HEADERS[name]
                        if option in options and not _same_value(options[option], value):
                            raise BadInput("bad_parameter", f"{option} is given twice, as a form field "
                                                            f"({options[option]}) and as the header {name} "
                                                            f"({value}): give it once.")
                        options[option], from_header[option] = value, name
                    elif name.startswith("x-trouble-"):
                        raise BadInput("bad_parameter", f"Unknown header {name}: the options are "
                                                        f"{', '.join(OPTION_HEADERS)}.")
                try:
                    self.detector.resolve_request(*(options.get(name) for name in OPTION_NAMES))
                except BadInput as error:  # "tta must be ..." names the form field: say which header it was
                    header = next((h for option, h in from_header.items() if str(error).startswith(option)), None)
                    if header is None:
                        raise
                    raise BadInput(error.code, f"{error} (sent as the header {header})", error.http_status) from None
                requests.append((self.detector.decode(image_bytes), options))
            except Exception as error:  # noqa: BLE001  one request's failure is its own answer
                requests.append(_refusal(error))
        return requests

    def inference(self, data, *args, **kwargs):
        results = []
        for item in data:
            if isinstance(item, BadInput):
                results.append(item)
                continue
            image, options = item
            try:
                results.append(self.detector.predict(image, *(options.get(name) for name in OPTION_NAMES)))
            except Exception as error:  # noqa: BLE001  one request's failure is its own answer
                results.append(_refusal(error))
        return results

    def postprocess(self, data):
        responses = []
        for index, item in enumerate(data):
            # The body is JSON (TorchServe serialises the dict); say so, as clients look at the header.
            self.context.set_response_content_type(index, "application/json")
            if isinstance(item, BadInput):
                self.context.set_response_status(code=item.http_status, phrase=item.code, idx=index)
                responses.append({"error": str(item), "code": item.code})
            else:
                responses.append(item)
        return responses


def _refusal(error: Exception) -> BadInput:
    """The answer for a request that failed: its BadInput, or a 500 for an unexpected error (its
    traceback goes to the log, not to the client). A CUDA error is raised on: it leaves the device
    unusable, and only a new worker (TorchServe starts one) recovers."""
    if isinstance(error, BadInput):
        return error
    if isinstance(error, RuntimeError) and "CUDA error" in str(error):
        raise error
    logger.exception("the model failed on one request of the batch")
    return BadInput("internal_error", f"The model failed on this photo ({type(error).__name__}); the server's "
                                      f"log has the details. Other photos are not affected.", 500)


def _same_value(first, second) -> bool:
    """Whether two spellings of an option's value mean the same ("0.5" and "0.50"; "true" and "True")."""
    first, second = str(first).strip().lower(), str(second).strip().lower()
    try:
        return float(first) == float(second)
    except ValueError:
        return first == second


def _photo_likeness(value) -> tuple[bool, int]:
    """Sort key for picking the photo among fields: one that starts like an image, else the largest."""
    if isinstance(value, (bytes, bytearray)):
        return looks_like_image(value), len(value)
    return False, len(value) if isinstance(value, str) else 0


def _split_request(row: dict) -> tuple[bytes, dict]:
    """TorchServe gives each request as a dict: the body under 'data' or 'body', or multipart
    fields under their own names. Besides the options, exactly one field is the photo: the only
    one, or of several the one whose bytes start like an image; any other is an unknown field, and
    two that start like images are two photos, refused."""
    options, others = {}, {}
    for key, value in row.items():
        if key in OPTION_NAMES:
            options[key] = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value
        else:
            others[key] = value
    if not others:
        raise BadInput("empty_body", f"The request has no image: send the bytes of {ACCEPTED}.")
    likeness = {key: _photo_likeness(value) for key, value in others.items()}
    photos = sorted(key for key, (starts_like_an_image, _) in likeness.items() if starts_like_an_image)
    if len(photos) > 1:
        raise BadInput("bad_parameter", f"The request holds {len(photos)} photos (fields {', '.join(photos)}): "
                                        f"send one photo per request.")
    photo = max(others, key=likeness.get)
    unknown = sorted(set(others) - {photo})
    if unknown:
        raise BadInput("bad_parameter", f"Unknown form field(s) {', '.join(unknown)}: the options are "
                                        f"{', '.join(OPTION_NAMES)}, and one field holds the photo.")
    value = others[photo]
    if value is None or (isinstance(value, (bytes, bytearray, str)) and not value):
        raise BadInput("empty_body", f"The request has no image: send the bytes of {ACCEPTED}.")
    if not isinstance(value, (bytes, bytearray)):  # TorchServe decodes text and JSON bodies, a JSON number too
        kind = "text" if isinstance(value, str) else "JSON"
        raise BadInput("not_an_image", f"The body is {kind}, not an image: send the photo's bytes "
                                       f"(Content-Type image/jpeg, image/png, image/webp or image/heic).", 415)
    return bytes(value), options
