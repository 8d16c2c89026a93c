# Study row "bbox loss: CIoU" (mAP50 0.488 in the original study; GIoU 0.493, DIoU 0.491).
# The default TOOD X-101 with its box loss GIoU (the base config) swapped for CIoU, computed in
# float32 (CIoULossFP32, trouble/models/float32_losses.py) so that it also trains under --amp.
_base_ = '../tood_x101-64x4d_fpn_acne04.py'

model = dict(bbox_head=dict(loss_bbox=dict(_delete_=True, type='CIoULossFP32', loss_weight=2.0)))
