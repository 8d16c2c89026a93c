# Study row "classification loss: GHM-C, PAFPN neck" (mAP50 0.485 in the original study, the same
# as Focal with PAFPN: tood_x101_focal_pafpn.py).
# The default TOOD X-101 with a PAFPN neck and the gradient-harmonised classification loss
# (GHM-C, with mmdet's settings for RetinaNet: 30 bins, momentum 0.75). GHMCTOOD
# (trouble/models/study_losses.py) feeds TOOD's probabilities to GHM-C as logits and scales it to
# TOOD's loss normalisation; its docstring says how.
_base_ = '../tood_x101-64x4d_fpn_acne04.py'

model = dict(
    neck=dict(type='PAFPN'),
    bbox_head=dict(loss_cls=dict(_delete_=True, type='GHMCTOOD', bins=30, momentum=0.75, use_sigmoid=True,
                                 loss_weight=1.0)))
