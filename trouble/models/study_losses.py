"""Focal loss and GHM-C as TOOD's classification loss, for the study's "Focal vs GHM-C" row.

TOOD cannot take mmdet's FocalLoss or GHMC as they are: after its first epochs it hands the loss a
(labels, alignment metrics) pair instead of labels, and its class scores are probabilities
(sigmoid already applied), not logits. These adapters keep the labels, and:

- FocalLossTOOD: the sigmoid focal loss on probabilities (`activated=True`), exactly the loss
  TOOD itself uses in its first epochs, kept for the whole run.
- GHMCTOOD: turns the probabilities back into logits for GHM-C. GHM-C is a mean over anchors by
  design, while TOOD divides every level's classification loss by the sum of the alignment
  metrics over all levels; so the mean is multiplied by this level's alignment-metric sum (at
  least 1). The whole is then GHM-C averaged over the levels, weighted by where the positives
  are. That weighting is this project's choice: the study does not say how it joined the two.
All of them run in float32 with autocast off, so a mixed-precision run computes them as a
float32 run does.
"""
import torch
from mmdet.models.losses import GHMC, FocalLoss
from mmdet.registry import MODELS

from trouble.models.float32_losses import _forward_in_float32


def _labels_of(target):
    """TOOD's targets: labels alone (first epochs) or (labels, alignment metrics)."""
    if isinstance(target, (tuple, list)):
        return target[0], target[1]
    return target, None


@MODELS.register_module()
class FocalLossTOOD(FocalLoss):
    """Sigmoid focal loss on TOOD's probabilities, ignoring the soft alignment targets."""

    def __init__(self, **kwargs):
        kwargs.setdefault("use_sigmoid", True)
        kwargs["activated"] = True  # TOOD's scores are probabilities
        super().__init__(**kwargs)

    def forward(self, pred, target, *args, **kwargs):
        labels, _ = _labels_of(target)
        return _forward_in_float32(super().forward, pred, labels, *args, **kwargs)


@MODELS.register_module()
class GHMCTOOD(GHMC):
    """GHM-C on TOOD's probabilities (as logits), scaled to TOOD's normalisation (see above)."""

    def forward(self, pred, target, label_weight, reduction_override=None, **kwargs):
        labels, alignment_metrics = _labels_of(target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            logits = torch.logit(pred.float().clamp(1e-6, 1 - 1e-6))
            loss = super().forward(logits, labels, label_weight.float(), reduction_override)
        if alignment_metrics is not None:
            loss = loss * alignment_metrics.sum().detach().clamp(min=1.0)
        return loss
