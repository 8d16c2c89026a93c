# The default model, as in the original study: TOOD ResNeXt-101-64x4d FPN, fine-tuned from the
# COCO-pretrained TOOD X-101 checkpoint. Needs a GPU for real training.
_base_ = './tood_r50_fpn_acne04.py'

load_from = ('https://download.openmmlab.com/mmdetection/v2.0/tood/'
             'tood_x101_64x4d_fpn_mstrain_2x_coco/'
             'tood_x101_64x4d_fpn_mstrain_2x_coco_20211211_003519-a4f36113.pth')

model = dict(
    backbone=dict(
        type='ResNeXt', depth=101, groups=64, base_width=4, num_stages=4,
        out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d')))
