"""TorchServe handler: photo bytes in, detections with per-type counts and a severity grade out.

It overrides only initialize, preprocess, inference and postprocess; the work itself is done
by the shared inference core (trouble.inference), which the .mar carries beside this file.

Request: POST /predictions/trouble with the image as the raw body or as a multipart field
(any name). Options, as multipart form fields or as headers (TorchServe 0.12 does not pass
query strings to handlers): threshold / X-Trouble-Threshold (0..1, all types),
sliced / X-Trouble-Sliced (true/false), slice_size / X-Trouble-Slice-Size (128..2048),
framing / X-Trouble-Framing (face/none), tta / X-Trouble-TTA (true/false: test-time augmentation).
A bad request gets HTTP 4xx with {"error": "...", "code": "..."} and the worker stays up.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ts.torch_handler.base_handler import BaseHandler

from trouble.images import ACCEPTED, BadInput
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
                for name, value in headers.items():
                    if str(name).lower() in OPTION_HEADERS:
                        options.setdefault(OPTION_HEADERS[str(name).lower()], value)
                self.detector.resolve_request(*(options.get(name) for name in OPTION_NAMES))
                requests.append((self.detector.decode(image_bytes), options))
            except BadInput as error:
                requests.append(error)
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
            except BadInput as error:
                results.append(error)
        return results

    def postprocess(self, data):
        responses = []
        for index, item in enumerate(data):
            if isinstance(item, BadInput):
                self.context.set_response_status(code=item.http_status, phrase=item.code, idx=index)
                responses.append({"error": str(item), "code": item.code})
            else:
                responses.append(item)
        return responses


def _split_request(row: dict) -> tuple[bytes, dict]:
    """TorchServe gives each request as a dict: the body under 'data' or 'body', or multipart
    fields and query parameters under their own names."""
    options, image_bytes = {}, None
    for key, value in row.items():
        if key in OPTION_NAMES:
            options[key] = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value
        elif isinstance(value, (bytes, bytearray)) and image_bytes is None:
            image_bytes = bytes(value)
    if image_bytes is None:
        for key in ("data", "body"):
            if isinstance(row.get(key), str):
                raise BadInput("not_an_image", "The body is text, not an image: send the photo's bytes "
                                               "(Content-Type image/jpeg, image/png, image/webp or image/heic).", 415)
        raise BadInput("empty_body", f"The request has no image: send the bytes of {ACCEPTED}.")
    return image_bytes, options
