# Study row "bbox loss: DIoU" (mAP50 0.491 in the original study; GIoU 0.493, CIoU 0.488).
# The default TOOD X-101 with its box loss GIoU (the base config) swapped for DIoU.
# DIoULossFP32 is mmdet's DIoULoss computed in float32 (trouble/models/float32_losses.py), so the
# variant also trains under --amp; without AMP the numbers are the same.
_base_ = '../tood_x101-64x4d_fpn_acne04.py'

model = dict(bbox_head=dict(loss_bbox=dict(_delete_=True, type='DIoULossFP32', loss_weight=2.0)))
