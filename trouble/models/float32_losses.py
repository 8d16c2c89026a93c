"""TOOD's classification losses, and the GIoU/DIoU/CIoU box losses of the variants, computed in
float32, so that mixed precision (AMP) trains.

TOOD uses FocalLoss and QualityFocalLoss with `activated=True`: they call
`F.binary_cross_entropy` on probabilities, which CUDA autocast refuses as unsafe in float16.
These subclasses run the same loss with autocast off and float32 inputs; nothing else changes.
"""
import torch
from mmdet.models.losses import CIoULoss, DIoULoss, FocalLoss, GIoULoss, QualityFocalLoss
from mmdet.registry import MODELS


def _as_float32(value):
    if torch.is_tensor(value) and value.is_floating_point():
        return value.float()
    if isinstance(value, (tuple, list)):
        return type(value)(_as_float32(item) for item in value)
    return value


def _forward_in_float32(loss_forward, pred, target, *args, **kwargs):
    with torch.autocast(device_type=pred.device.type, enabled=False):
        return loss_forward(pred.float(), _as_float32(target), *args, **kwargs)


@MODELS.register_module()
class QualityFocalLossFP32(QualityFocalLoss):
    def forward(self, pred, target, *args, **kwargs):
        return _forward_in_float32(super().forward, pred, target, *args, **kwargs)


@MODELS.register_module()
class FocalLossFP32(FocalLoss):
    def forward(self, pred, target, *args, **kwargs):
        return _forward_in_float32(super().forward, pred, target, *args, **kwargs)


@MODELS.register_module()
class GIoULossFP32(GIoULoss):
    """GIoU on float32 boxes: box areas of a 640 px image overflow float16."""

    def forward(self, pred, target, *args, **kwargs):
        return _forward_in_float32(super().forward, pred, target, *args, **kwargs)


@MODELS.register_module()
class DIoULossFP32(DIoULoss):
    def forward(self, pred, target, *args, **kwargs):
        return _forward_in_float32(super().forward, pred, target, *args, **kwargs)


@MODELS.register_module()
class CIoULossFP32(CIoULoss):
    def forward(self, pred, target, *args, **kwargs):
        return _forward_in_float32(super().forward, pred, target, *args, **kwargs)
