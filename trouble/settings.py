"""The serving settings a model archive carries (the `trouble:` section of its model-config.yaml),
with their defaults and checks. A check raises ValueError; the inference core turns one about a
request's option into BadInput (a 400 answer).

Apart from the inference core (trouble/inference.py) so that what only reads or writes settings,
such as training and archiving, needs no SAHI: a GPU machine that only trains carries none.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from trouble.framing import FRAMINGS
from trouble.images import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE

MODEL_CONFIG_FILE = "model-config.yaml"
POSTPROCESS_TYPES = ("GREEDYNMM", "NMM", "NMS")
MATCH_METRICS = ("IOS", "IOU")
MIN_SLICE, MAX_SLICE = 128, 2048
MAX_SLICE_BATCH = 64


@dataclass
class SlicingSettings:
    """How SAHI cuts a photo and merges the detections.

    Defaults measured with bench/slicing_settings.py (docs/FIGURES.md): merging with NMS/IOU beats
    SAHI's GREEDYNMM/IOS, which fuses neighbouring lesions into large boxes; photos no larger than
    the slice (ACNE04's 640 px) go through whole, which scored best; larger ones are sliced.
    """
    enabled: bool = True
    slice_size: int = 640
    overlap: float = 0.2
    postprocess: str = "NMS"
    match_metric: str = "IOU"
    match_threshold: float = 0.5
    full_image_pass: bool = True
    # Slices per forward pass. On 2 CPU cores one at a time was fastest (a 12 MP photo, 48 slices:
    # 41.6 s at 1, 45.5 s at 4, 48.0 s at 8; bench/results/inference_speed.json); raise it on a GPU.
    batch_size: int = 1

    def validate(self):
        if not MIN_SLICE <= self.slice_size <= MAX_SLICE:
            raise ValueError(f"slice_size must be between {MIN_SLICE} and {MAX_SLICE}, got {self.slice_size}")
        if not 0.0 <= self.overlap < 0.9:
            raise ValueError(f"overlap must be in [0, 0.9), got {self.overlap}")
        if self.postprocess not in POSTPROCESS_TYPES:
            raise ValueError(f"postprocess must be one of {POSTPROCESS_TYPES}, got {self.postprocess}")
        if self.match_metric not in MATCH_METRICS:
            raise ValueError(f"match_metric must be one of {MATCH_METRICS}, got {self.match_metric}")
        if not 1 <= self.batch_size <= MAX_SLICE_BATCH:
            raise ValueError(f"slicing.batch_size (slices per forward pass) must be between 1 and {MAX_SLICE_BATCH}, "
                             f"got {self.batch_size}")


@dataclass
class TestTimeAugmentation:
    """Several passes over each image (or slice), their boxes fused (trouble/fusion.py).

    Each pass resizes the image to one of `sizes` for the model, once as it is and, with `flip`,
    once mirrored. Measured with bench/test_time_augmentation.py (docs/FIGURES.md): more accurate,
    and as many times slower as there are passes.
    """
    enabled: bool = False
    sizes: list = field(default_factory=lambda: [640, 720])
    flip: bool = True
    fuse_iou: float = 0.55
    # A fused score is an average over the passes (0 where a pass missed the lesion), lower than
    # one pass's score, so these passes have their own thresholds; {} uses the model's.
    score_thresholds: dict = field(default_factory=dict)

    def passes(self) -> list:
        """[(input size, mirrored)], one per pass."""
        return [(size, mirrored) for size in self.sizes for mirrored in ((False, True) if self.flip else (False,))]

    def validate(self):
        if not self.sizes or not all(isinstance(size, int) for size in self.sizes):
            raise ValueError(f"tta.sizes must be a list of input sizes, got {self.sizes!r}")
        for size in self.sizes:
            check_input_size(size)
        if not isinstance(self.fuse_iou, (int, float)) or not 0.0 < self.fuse_iou <= 1.0:
            raise ValueError(f"tta.fuse_iou must be a number in (0, 1], got {self.fuse_iou!r}")


@dataclass
class ModelSettings:
    """The `trouble:` section of model-config.yaml."""
    classes: list
    score_thresholds: dict
    model_name: str = "trouble"
    model_version: str = "1.0"
    # Written by train.archive: when the archive was made (UTC) and the first 16 hex digits of its
    # model.pth's SHA-256. Two archives of one version are told apart by them.
    archived: str | None = None
    weights_sha256: str | None = None
    config: str = "config.py"
    checkpoint: str = "model.pth"
    pretrained: str = "unknown"
    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Model passes one photo may take (slices, plus the whole-image pass, times the test-time
    # augmentation passes); a request for more is refused, so that one request (a large photo in
    # 128 px slices) cannot hold the worker for many minutes. 200 passes: about 2.8 minutes of the
    # demo model on 2 CPU cores (0.85 s a pass: a 12 MP photo's 49 passes took 41.6 s,
    # bench/results/inference_speed.json), within TorchServe's 300 s; a 12 MP photo in 640 px
    # slices with test-time augmentation takes 196. Raise it on a GPU.
    max_model_passes: int = 200
    # Seconds one photo's model passes may take. The core projects the time of all of a photo's
    # passes from those done so far and refuses the photo once that goes over (or the time itself
    # does): past TorchServe's responseTimeout (300 s) the worker would be killed and restarted, and
    # the client told only "Worker died." (a 12 MP photo, sliced with test-time augmentation, 196
    # passes, on a busy 2-core machine: 1.6 s a pass). Raise it with responseTimeout.
    max_seconds_per_photo: int = 240
    # The side each image (or slice) is resized to for the model; None keeps the config's test
    # Resize. Upscaling makes small lesions bigger for the model (docs/FIGURES.md).
    input_size: int | None = None
    # IoU above which the model's own NMS keeps only the higher-scoring of two boxes; None keeps
    # the config's (TOOD: 0.6). Lesion boxes hardly ever overlap (docs/FIGURES.md).
    nms_iou: float | None = None
    slicing: SlicingSettings = field(default_factory=SlicingSettings)
    # "face": crop a photo to the face when the face is small in it (trouble/framing.py); "none".
    framing: str = "none"
    # Brighten a dark photo for the model (trouble/photo_checks.py, brightening_gain): it finds more
    # of the lesions of a dark photo so (docs/FIGURES.md, "Photo conditions").
    brighten_dark: bool = True
    tta: TestTimeAugmentation = field(default_factory=TestTimeAugmentation)
    # What the model scored when it was archived ({data, images, mAP50, count_mae, grade_accuracy}),
    # shown to users beside its answers; None when no evaluation came with it.
    validation: dict | None = None

    @classmethod
    def from_yaml(cls, path: Path) -> "ModelSettings":
        """The settings of a model-config.yaml; ValueError naming the file when it is not one (it
        may have been edited by hand, README: a staged folder)."""
        try:
            with open(path) as f:
                section = dict((yaml.safe_load(f) or {}).get("trouble") or {})
            if "classes" not in section:
                raise ValueError(f"{path} has no trouble.classes")
            # A misspelt setting is refused, not left at its default ("enabeld: false" under
            # slicing had left slicing on).
            section["slicing"] = SlicingSettings(**known_settings(section.get("slicing") or {}, SlicingSettings,
                                                                  path, "trouble.slicing."))
            section["tta"] = TestTimeAugmentation(**known_settings(section.get("tta") or {}, TestTimeAugmentation,
                                                                   path, "trouble.tta."))
            section.setdefault("score_thresholds", {})
            section.pop("trained", None)  # how the model was trained (train.archive): a record, not a setting
            settings = cls(**known_settings(section, cls, path, "trouble."))
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML ({error})") from None
        except (AttributeError, TypeError) as error:  # a list where a mapping belongs, and the like
            raise ValueError(f"{path} has a setting of the wrong shape ({error})") from None
        if not (isinstance(settings.classes, list) and settings.classes
                and all(isinstance(name, str) for name in settings.classes)):
            raise ValueError(f"{path}: trouble.classes must be a list of type names, got {settings.classes!r}")
        if not isinstance(settings.score_thresholds, dict):
            raise ValueError(f"{path}: trouble.score_thresholds must map type names to scores, "
                             f"got {settings.score_thresholds!r}")
        return settings

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self):
        try:
            if self.input_size is not None:
                check_input_size(self.input_size)
            if self.nms_iou is not None:
                check_nms_iou(self.nms_iou)
            check_framing(self.framing)
            check_score_thresholds(self.score_thresholds, "score_thresholds", self.classes)
            check_score_thresholds(self.tta.score_thresholds, "tta.score_thresholds", self.classes)
            for name in ("max_model_passes", "max_seconds_per_photo", "max_side", "max_pixels"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a whole number, 1 or more, got {value!r}")
            for name, value in (("slicing.enabled", self.slicing.enabled), ("tta.enabled", self.tta.enabled),
                                ("brighten_dark", self.brighten_dark),
                                ("tta.flip", self.tta.flip), ("slicing.full_image_pass", self.slicing.full_image_pass)):
                if not isinstance(value, bool):  # the text "false" would count as on
                    raise ValueError(f"{name} must be true or false, got {value!r}")
            self.slicing.validate()
            self.tta.validate()
        except TypeError as error:  # e.g. slice_size: '640', a string where a number belongs
            raise ValueError(f"model-config.yaml: a serving setting has the wrong type ({error})") from None


def known_settings(section: dict, settings_class, path, prefix: str) -> dict:
    """section, or ValueError naming the keys that are no field of settings_class."""
    if not isinstance(section, dict):  # from_yaml names it a setting of the wrong shape
        raise TypeError(f"{prefix.rstrip('.')} must be a mapping of settings, got {section!r}")
    known = [f.name for f in fields(settings_class)]
    unknown = sorted(set(section) - set(known), key=str)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(prefix + str(k) for k in unknown)} (misspelt? "
                         f"{prefix.rstrip('.')} takes {', '.join(known)})")
    return section


def check_score_thresholds(thresholds: dict, name: str, classes: list):
    """{type: score in [0, 1]}, for types the model has."""
    if not isinstance(thresholds, dict):
        raise ValueError(f"{name} must map type names to scores, got {thresholds!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in thresholds.values()):
        raise ValueError(f"{name} must be numbers in [0, 1], got {thresholds}")
    unknown = sorted(set(thresholds) - set(classes))
    if unknown:
        raise ValueError(f"{name} has thresholds for types the model does not have: {unknown}")


def check_nms_iou(value: float):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"nms_iou must be a number in (0, 1], got {value!r}")


def check_framing(value: str):
    if value not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {value!r}")


def check_input_size(size: int):
    """The input size's bounds, shared by serving, evaluation and re-archiving."""
    if not MIN_SLICE <= size <= MAX_SLICE:
        raise ValueError(f"input_size must be between {MIN_SLICE} and {MAX_SLICE}, got {size}")
