# TOOD with an ImageNet-pretrained EfficientNet-Lite2 backbone (wider than Lite0, slower).
_base_ = './tood_efficientnet-lite0_fpn_acne04.py'

model = dict(
    backbone=dict(model_name='efficientnet-lite2'),
    neck=dict(in_channels=[48, 120, 352]))
