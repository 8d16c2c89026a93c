# Study row "classification loss: Focal, PAFPN neck" (mAP50 0.485 in the original study, the same
# as GHM-C with PAFPN: tood_x101_ghmc_pafpn.py).
# The default TOOD X-101 with two changes: the neck is PAFPN (FPN plus a bottom-up path) instead
# of FPN, and TOOD's own classification loss (Quality Focal Loss on its soft alignment targets)
# becomes the sigmoid focal loss on hard labels. FocalLossTOOD (trouble/models/study_losses.py)
# is mmdet's FocalLoss adapted to TOOD's probability scores and (labels, alignment) targets.
_base_ = '../tood_x101-64x4d_fpn_acne04.py'

model = dict(
    neck=dict(type='PAFPN'),  # same channels, levels and extra convs as the base FPN
    bbox_head=dict(loss_cls=dict(_delete_=True, type='FocalLossTOOD', use_sigmoid=True, gamma=2.0,
                                 alpha=0.25, loss_weight=1.0)))
