"""The one inference core: model files → detections, counts per type and a severity grade.

The TorchServe handler, the app's local mode, the batch CLI, evaluation and the benchmarks all
call `TroubleDetector.predict`, so pre- and post-processing exist once.

A model folder (an unpacked .mar, or one staged by train.archive) holds:
    model-config.yaml   TorchServe settings plus a `trouble:` section read here
    config.py           the resolved mmdet config
    model.pth           {'state_dict': ...} tensors only (loaded with weights_only=True)
(the `trouble:` section's settings and their checks are in trouble/settings.py).

Large photos are sliced with SAHI (its own slicing and merging); `MMDetSliceModel` is the small
adapter between an mmdet detector and SAHI, and runs a batch of slices through the model at once.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from sahi.models.base import DetectionModel
from sahi.predict import get_prediction, get_sliced_prediction
from sahi.prediction import ObjectPrediction
from sahi.slicing import get_slice_bboxes

from trouble.count_range import answered_as_validated, typical_count_range
from trouble.framing import face_crop
from trouble.fusion import fuse_passes
from trouble.images import BadInput, DecodedImage, decode_image
from trouble.mar import extract_mar
from trouble.photo_checks import PhotoJudgement, brightened, judge_photo
from trouble.settings import MODEL_CONFIG_FILE, ModelSettings, SlicingSettings, check_framing
from trouble.severity import describe_grade

# An answer's scores are rounded to this many decimals; thresholds are compared with the rounded score.
SCORE_DECIMALS = 4


class MMDetSliceModel(DetectionModel):
    """SAHI adapter for an mmdet detector that is already loaded; batches slices natively."""

    def __init__(self, detector, class_names, device: str, confidence_threshold: float):
        self._detector = detector
        self._class_names = list(class_names)
        self._pipelines = {None: _ndarray_test_pipeline(detector.cfg)}  # by input size; None: the config's
        # The passes each image or slice goes through, [(input size or None, mirrored)], and the IoU
        # at which several passes' boxes are fused. Set per request by TroubleDetector: SAHI hands
        # perform_inference the image alone.
        self.passes = [(None, False)]
        self.fuse_iou = 0.55
        self.clock: PassClock | None = None  # the photo's time limit, likewise set per request
        super().__init__(model=detector, device=device, confidence_threshold=confidence_threshold,
                         category_mapping={str(i): name for i, name in enumerate(self._class_names)},
                         load_at_init=True)

    def check_dependencies(self, packages=None):
        pass  # mmdet is imported already

    def set_model(self, model, **kwargs):
        self.model = model

    @property
    def num_categories(self):
        return len(self._class_names)

    @property
    def has_mask(self):
        return False

    @property
    def category_names(self):
        return self._class_names

    def perform_inference(self, image: np.ndarray):
        self._original_predictions = self._forward([image])

    def perform_batch_inference(self, images):
        # Run now, in one forward pass; the base class would run them one at a time.
        self._original_predictions = self._forward(images)

    def _forward(self, images):
        """RGB arrays → list of (boxes Nx4, scores N, labels N) numpy arrays, one per image."""
        per_pass = []
        for size, mirrored in self.passes:
            per_pass.append(self.forward_pass(images, size, mirrored))
            if self.clock is not None:
                self.clock.count(len(images))
        outputs = []
        for index in range(len(images)):
            results = [pass_results[index] for pass_results in per_pass]
            boxes, scores, labels = results[0] if len(results) == 1 else fuse_passes(results, self.fuse_iou)
            keep = scores >= self.confidence_threshold
            outputs.append((boxes[keep], scores[keep], labels[keep]))
        return outputs

    def forward_pass(self, images, size, mirrored: bool):
        """One pass of the model over the images, resized to `size` (None: the config's test size)
        and mirrored or not → (boxes, scores, labels) per image, in the image's own pixels, before
        any score threshold. Public: bench/test_time_augmentation.py runs each pass once and fuses
        them in several ways."""
        import torch
        from mmengine.dataset import pseudo_collate

        if size not in self._pipelines:
            self._pipelines[size] = _ndarray_test_pipeline(self._detector.cfg, size)
        # mmdet pipelines work in BGR, like cv2-loaded images; the preprocessor converts back.
        columns = slice(None, None, -1 if mirrored else 1)
        samples = [self._pipelines[size](dict(img=np.ascontiguousarray(img[:, columns, ::-1]), img_id=i))
                   for i, img in enumerate(images)]
        with torch.no_grad():
            results = self._detector.test_step(pseudo_collate(samples))
        outputs = []
        for image, result in zip(images, results):
            instances = result.pred_instances
            boxes = instances.bboxes.cpu().numpy()
            if mirrored:
                width = image.shape[1]
                boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
            outputs.append((boxes, instances.scores.cpu().numpy(), instances.labels.cpu().numpy()))
        return outputs

    def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=[[0, 0]],
                                                                 full_shape_list=None):
        from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

        shifts = fix_shift_amount_list(shift_amount_list)
        shapes = fix_full_shape_list(full_shape_list)
        per_image = []
        for index, (boxes, scores, labels) in enumerate(self._original_predictions):
            shift = shifts[index] if index < len(shifts) else [0, 0]
            shape = shapes[index] if shapes else None
            predictions = []
            for box, score, label in zip(boxes, scores, labels):
                x1, y1, x2, y2 = (float(v) for v in box)
                if x2 - x1 <= 0 or y2 - y1 <= 0:
                    continue
                predictions.append(ObjectPrediction(
                    bbox=[x1, y1, x2, y2], category_id=int(label), category_name=self._class_names[int(label)],
                    score=float(score), shift_amount=list(shift), full_shape=shape))
            per_image.append(predictions)
        self._object_prediction_list_per_image = per_image


class PassClock:
    """Refuses a photo whose model passes would take longer than the limit: after each pass the time
    of all of them is projected from those done, so a photo that would run for minutes is refused
    after its first few passes, not killed by TorchServe's timeout at the end."""

    def __init__(self, passes: int, limit_s: float):
        self.passes, self.limit_s = passes, limit_s
        self.done, self.started = 0, time.perf_counter()

    def count(self, passes: int):
        self.done += passes
        elapsed = time.perf_counter() - self.started
        projected = elapsed / self.done * self.passes
        # The first pass alone also builds the resize pipeline: projected from it only when it ran over.
        if self.done < self.passes and projected > self.limit_s and (self.done >= 2 or elapsed > self.limit_s):
            raise BadInput("too_much_work",
                           f"This photo would take about {projected:.0f} s ({self.passes} model passes, "
                           f"{elapsed / self.done:.1f} s each on this server); it allows {self.limit_s:.0f} s "
                           f"per photo. Use a larger slice size, or turn sliced inference or test-time "
                           f"augmentation off.")


RESIZE_TYPES = ("Resize", "mmdet.Resize")


def _resize_steps(cfg):
    return [step for step in cfg.test_dataloader.dataset.pipeline if step["type"] in RESIZE_TYPES]


def config_input_size(cfg) -> int | None:
    """The longest side of the config's test Resize: the size the model sees images at."""
    steps = _resize_steps(cfg)
    return int(max(steps[0]["scale"])) if steps else None


def _ndarray_test_pipeline(cfg, input_size: int | None = None):
    """The config's test pipeline, reading an array instead of a file and without annotations,
    resizing to `input_size` where one is given."""
    from mmengine.dataset import Compose

    steps = []
    for step in cfg.test_dataloader.dataset.pipeline:
        step = dict(step)
        if input_size and step["type"] in RESIZE_TYPES:
            step["scale"] = (input_size, input_size)
        elif step["type"] in ("LoadImageFromFile", "mmdet.LoadImageFromFile"):
            step = dict(type="mmdet.LoadImageFromNDArray")
        elif step["type"] in ("LoadAnnotations", "mmdet.LoadAnnotations"):
            continue
        elif step["type"] in ("PackDetInputs", "mmdet.PackDetInputs"):
            step["meta_keys"] = ("img_id", "ori_shape", "img_shape", "scale_factor")
        steps.append(step)
    return Compose(steps)


def load_checkpoint(path: Path) -> dict:
    """model.pth → its state dict, loaded with weights_only=True: tensors only, never code.

    A missing, truncated or damaged file, or one that carries Python objects (unpickling them can
    run code), raises an error that names the file. torch's own message is left out on purpose:
    it advises loading the file with weights_only=False, wrong for a damaged file and unsafe for
    an untrusted one.
    """
    import pickle
    import re

    import torch

    if not path.is_file():
        raise FileNotFoundError(f"The model checkpoint {path} is missing: rebuild the archive with `make archive`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        code = re.search(r"GLOBAL (\S+)", str(error))
        raise ValueError(
            f"The model checkpoint {path} cannot be loaded as plain tensors: it is truncated or damaged, or it "
            f"carries Python objects{f' ({code.group(1)})' if code else ''}, which are refused because "
            f"unpickling them can run code. Rebuild it with `make archive`.") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"The model checkpoint {path} holds no state dict of tensors: rebuild it with `make archive`.")
    return state


def model_nms(cfg) -> dict:
    """The detector's own NMS settings (model.test_cfg.nms), or {} where it has none."""
    return (cfg.model.get("test_cfg") or {}).get("nms") or {}


def load_mmdet_model(model_dir: Path, settings: ModelSettings, device: str):
    """Build the detector from config.py and load model.pth (tensors only: weights_only=True)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    import torch
    from mmdet.registry import MODELS

    import trouble.models  # noqa: F401  registers the project's own mmdet parts

    cfg = Config.fromfile(str(model_dir / settings.config))
    init_default_scope(cfg.get("default_scope", "mmdet"))
    if settings.input_size:
        for step in _resize_steps(cfg):
            step["scale"] = (settings.input_size, settings.input_size)
    if settings.nms_iou is not None:
        nms = model_nms(cfg)
        if not nms:
            raise ValueError(f"{settings.config} has no model.test_cfg.nms to set nms_iou on")
        nms.iou_threshold = settings.nms_iou
    cfg.model.bbox_head.num_classes = len(settings.classes)
    detector = MODELS.build(cfg.model)
    state = load_checkpoint(model_dir / settings.checkpoint)
    detector.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    detector.cfg = cfg
    detector.dataset_meta = {"classes": tuple(settings.classes)}
    # channels_last: about 1.1x faster on 2 CPU cores for the same detections
    # (bench/inference_speed.py, "memory format").
    return detector.to(device, memory_format=torch.channels_last).eval()


class TroubleDetector:
    """Load once, then `predict(image)` → the response dict served everywhere."""

    def __init__(self, model_dir, device: str | None = None, input_size: int | None = None,
                 nms_iou: float | None = None):
        """input_size, nms_iou: override model-config.yaml's (for evaluation and benchmarks)."""
        import torch

        self.model_dir = Path(model_dir)
        self.settings = ModelSettings.from_yaml(self.model_dir / MODEL_CONFIG_FILE)
        if input_size:
            self.settings.input_size = input_size
        if nms_iou is not None:
            self.settings.nms_iou = nms_iou
        self.settings.validate()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.classes = list(self.settings.classes)
        self.thresholds = {name: float(self.settings.score_thresholds.get(name, 0.3)) for name in self.classes}
        self.tta_thresholds = {name: float(self.settings.tta.score_thresholds.get(name, self.thresholds[name]))
                               for name in self.classes}
        detector = load_mmdet_model(self.model_dir, self.settings, self.device)
        self.input_size = config_input_size(detector.cfg)
        self.nms_iou = model_nms(detector.cfg).get("iou_threshold")  # what the model applies
        self.max_per_pass = (detector.cfg.model.get("test_cfg") or {}).get("max_per_img")  # boxes a pass keeps
        self.sahi_model = MMDetSliceModel(detector, self.classes, self.device,
                                          confidence_threshold=min(self.thresholds.values()))

    @classmethod
    def from_path(cls, path, device: str | None = None, input_size: int | None = None,
                  nms_iou: float | None = None) -> "TroubleDetector":
        """A model folder or a .mar archive (unpacked into a temporary folder)."""
        path = Path(path)
        if path.is_dir():
            if not (path / MODEL_CONFIG_FILE).is_file():
                raise FileNotFoundError(f"{path} is not a model folder: it has no {MODEL_CONFIG_FILE} (give a .mar, "
                                        f"or a folder unpacked from one or staged by train.archive)")
            return cls(path, device, input_size, nms_iou)
        if not path.is_file():
            raise FileNotFoundError(f"model {path} not found (build one with `make train` or `make archive`)")
        # Everything is read into memory while loading, so the unpacked copy goes right after.
        with tempfile.TemporaryDirectory(prefix="trouble-mar-") as unpacked:
            extract_mar(path, Path(unpacked))
            try:
                return cls(Path(unpacked), device, input_size, nms_iou)
            # Named by the archive and the file's name in it, not by the temporary copy's path.
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{path}: {str(error).replace(unpacked + os.sep, '')}") from None
            except ValueError as error:
                raise ValueError(f"{path}: {str(error).replace(unpacked + os.sep, '')}") from None

    def model_info(self) -> dict:
        return {"name": self.settings.model_name, "version": str(self.settings.model_version),
                "archived": self.settings.archived, "weights_sha256": self.settings.weights_sha256,
                "classes": self.classes, "pretrained": self.settings.pretrained,
                "score_thresholds": self.thresholds, "tta_score_thresholds": self.tta_thresholds,
                "validation": self.settings.validation}

    def resolve_request(self, score_threshold=None, sliced=None, slice_size=None, framing=None,
                        tta=None) -> tuple[dict, SlicingSettings, str, bool]:
        """Per-request options → (thresholds per type, slicing, framing, test-time augmentation on).
        Bad values raise BadInput."""
        tta = self.settings.tta.enabled if tta is None else _as_bool(tta, "tta")
        thresholds = dict(self.tta_thresholds if tta else self.thresholds)
        if score_threshold is not None:
            try:
                value = float(score_threshold)
            except (TypeError, ValueError):
                raise BadInput("bad_parameter", f"threshold must be a number in [0, 1], got {score_threshold!r}")
            if not 0.0 <= value <= 1.0 or value != value:
                raise BadInput("bad_parameter", f"threshold must be in [0, 1], got {score_threshold!r}")
            thresholds = {name: value for name in self.classes}
        slicing = SlicingSettings(**asdict(self.settings.slicing))
        if sliced is not None:
            slicing.enabled = _as_bool(sliced, "sliced")
        if slice_size is not None:
            try:
                slicing.slice_size = int(slice_size)
            except (TypeError, ValueError):
                raise BadInput("bad_parameter", f"slice_size must be an integer, got {slice_size!r}")
        framing = self.settings.framing if framing is None else str(framing).strip().lower()
        try:
            slicing.validate()
            check_framing(framing)
        except ValueError as error:
            raise BadInput("bad_parameter", str(error)) from None
        return thresholds, slicing, framing, tta

    def decode(self, data: bytes) -> DecodedImage:
        return decode_image(data, max_side=self.settings.max_side, max_pixels=self.settings.max_pixels)

    def predict(self, image, score_threshold=None, sliced=None, slice_size=None, framing=None, tta=None) -> dict:
        """image: bytes of a photo, a DecodedImage, or an RGB uint8 array. Returns the response dict."""
        thresholds, slicing, framing, tta = self.resolve_request(score_threshold, sliced, slice_size, framing, tta)
        if isinstance(image, (bytes, bytearray)):
            image = self.decode(bytes(image))
        elif isinstance(image, np.ndarray):
            image = DecodedImage(image, image.shape[1], image.shape[0], "array")
        started = time.perf_counter()
        crop = face_crop(image.rgb) if framing == "face" else None
        x1, y1, x2, y2 = crop or (0, 0, image.rgb.shape[1], image.rgb.shape[0])
        passes = self.settings.tta.passes() if tta else [(None, False)]
        slices = self._slice_count(y2 - y1, x2 - x1, slicing)
        model_passes = self._refuse_too_many_passes(slices, slicing, passes)
        scale = image.scale_to_original
        # What about the photo makes its count say little, and the light the model gets it in.
        photo = judge_photo(image.rgb, framing, [v * scale for v in crop] if crop else None,
                            (image.original_width, image.original_height), self.settings.brighten_dark)
        self.sahi_model.clock = PassClock(model_passes, self.settings.max_seconds_per_photo)
        try:
            # Half a unit of the answer's last decimal lower: a raw score that rounds up to a
            # threshold reaches _response, which compares the rounded score.
            predictions = self._run_model(brightened(image.rgb[y1:y2, x1:x2], photo.gain), slicing, slices, passes,
                                          min(thresholds.values()) - 0.5 * 10 ** -SCORE_DECIMALS)
        finally:
            self.sahi_model.clock = None
        inferred_at = time.perf_counter()
        response = self._response(image, predictions, thresholds, slicing, slices, framing, crop, passes, photo)
        done = time.perf_counter()
        response["timings_ms"] = {"decode": image.decode_ms, "inference": _ms(started, inferred_at),
                                  "postprocess": _ms(inferred_at, done),
                                  "total": round(image.decode_ms + _ms(started, done), 1)}
        return response

    @staticmethod
    def _slice_count(height: int, width: int, slicing: SlicingSettings) -> int:
        """How many slices SAHI cuts an image into; 0 when the image goes through whole."""
        if not slicing.enabled or max(height, width) <= slicing.slice_size:
            return 0
        return len(get_slice_bboxes(height, width, slice_height=slicing.slice_size, slice_width=slicing.slice_size,
                                    overlap_height_ratio=slicing.overlap, overlap_width_ratio=slicing.overlap))

    def _refuse_too_many_passes(self, slices: int, slicing: SlicingSettings, passes: list) -> int:
        """The photo's model passes, or BadInput when they are more than the archive allows."""
        images = slices + int(slicing.full_image_pass) if slices else 1
        limit = self.settings.max_model_passes
        if images * len(passes) > limit:
            what = (f"{slices} slices of {slicing.slice_size} px" + (" and the whole image" if images > slices else "")
                    if slices else "the whole image")
            tta = f", each in {len(passes)} test-time augmentation passes" if len(passes) > 1 else ""
            raise BadInput("too_much_work",
                           f"This photo would take {images * len(passes)} model passes ({what}{tta}); this model "
                           f"allows {limit} per photo. Use a larger slice size, or turn sliced inference or "
                           f"test-time augmentation off.")
        return images * len(passes)

    def _run_model(self, rgb: np.ndarray, slicing: SlicingSettings, slices: int, passes: list, confidence: float):
        """→ SAHI predictions. slices: how many slices SAHI cuts rgb into (_slice_count), 0 to run it
        whole; passes: [(input size, mirrored)] that each image or slice goes through."""
        self.sahi_model.passes = passes
        self.sahi_model.fuse_iou = self.settings.tta.fuse_iou
        if slices:
            result = get_sliced_prediction(
                rgb, self.sahi_model, slice_height=slicing.slice_size, slice_width=slicing.slice_size,
                overlap_height_ratio=slicing.overlap, overlap_width_ratio=slicing.overlap,
                perform_standard_pred=slicing.full_image_pass, postprocess_type=slicing.postprocess,
                postprocess_match_metric=slicing.match_metric,
                postprocess_match_threshold=slicing.match_threshold, verbose=0,
                batch_size=slicing.batch_size, force_postprocess_type=True, confidence_threshold=confidence)
        else:
            # The whole image at once: the model's own NMS (and the fusion of passes) is the only
            # merging needed.
            result = get_prediction(rgb, self.sahi_model, confidence_threshold=confidence)
        return result.object_prediction_list

    def _response(self, image: DecodedImage, predictions, thresholds: dict, slicing: SlicingSettings,
                  slices: int, framing: str, crop, passes: list, photo: PhotoJudgement) -> dict:
        """crop: the (x1, y1, x2, y2) of the working image the model was run on, or None for all of it;
        photo: judge_photo's judgement of it."""
        scale = image.scale_to_original
        left, top, right, bottom = crop or (0, 0, image.rgb.shape[1], image.rgb.shape[0])
        detections = []
        for prediction in predictions:
            name = prediction.category.name
            # Rounded as the answer gives it, then compared: an evaluation of saved answers (which
            # has only the rounded score) then keeps exactly the boxes the answer kept.
            score = round(float(prediction.score.value), SCORE_DECIMALS)
            if score < thresholds[name]:
                continue
            x1, y1, x2, y2 = prediction.bbox.to_xyxy()
            # Moved by the crop's corner and kept within the crop (a box may reach past it), then
            # in original pixels.
            box = [min(max(v + low, low), high) * scale for v, low, high in
                   zip((x1, y1, x2, y2), (left, top) * 2, (right, bottom) * 2)]
            box = [min(v, limit) for v, limit in zip(box, (image.original_width, image.original_height) * 2)]
            detections.append({"type": name, "score": score,
                               "box": [round(v, 1) for v in box]})
        detections.sort(key=lambda d: (-d["score"], d["box"]))  # deterministic order for equal scores
        counts = {name: 0 for name in self.classes}
        for detection in detections:
            counts[detection["type"]] += 1
        sliced = slicing.enabled
        response = {
            "model": self.model_info(),
            "image": {"width": image.original_width, "height": image.original_height,
                      "working_width": int(image.rgb.shape[1]), "working_height": int(image.rgb.shape[0]),
                      "skin_fraction": None if photo.skin_fraction is None else round(photo.skin_fraction, 3),
                      # trouble.skin.brightness, and what the model's input was brightened by (None: not).
                      "brightness": round(photo.brightness, 1),
                      "brightened_by": photo.gain if photo.gain != 1 else None,
                      "taken_at": image.taken_at},
            "detections": detections,
            "counts": counts,
            "total": len(detections),
            "severity": describe_grade(len(detections)),
            # What about the photo makes this count say little (no colour, dark, small, no face, a small one).
            "warnings": photo.warnings + self._cap_warning(len(detections)),
            # What was applied: the slicing details only where slicing was on.
            "settings": {"score_thresholds": thresholds, "input_size": self.input_size, "nms_iou": self.nms_iou,
                         "sliced": sliced, "slice_size": slicing.slice_size if sliced else None, "slices": slices,
                         "overlap": slicing.overlap if sliced else None,
                         "postprocess": slicing.postprocess if sliced else None,
                         "full_image_pass": slicing.full_image_pass if sliced else None,
                         "framing": framing,
                         # Test-time augmentation: the passes over each image (or slice), fused.
                         "tta": len(passes) > 1, "passes": len(passes),
                         # The part of the photo the model was run on (original pixels), or None for all of it.
                         "face_crop": [round(v * scale, 1) for v in crop] if crop else None},
        }
        # Whether the model's validation figures hold for this answer, and the count's typical range from them.
        response["settings"]["as_validated"] = answered_as_validated(response)
        response["severity"]["typical_range"] = typical_count_range(response)
        return response

    def _cap_warning(self, total: int) -> list[dict]:
        """A count as large as the boxes one model pass keeps may have been cut there (a threshold
        near 0 reaches it): said, not passed off as the count."""
        if not self.max_per_pass or total < self.max_per_pass:
            return []
        return [{"code": "count_capped", "title": f"The count reached the model's limit ({self.max_per_pass} boxes "
                                                  f"per pass)",
                 "detail": "The photo may hold more of what the model finds at this threshold; most of these boxes "
                           "are likely not lesions. Raise the threshold."}]


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadInput("bad_parameter", f"{name} must be true or false, got {value!r}")


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 1)
