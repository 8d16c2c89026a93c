# Study row "detector: CenterNet++" (mAP50 0.425 in the original study; TOOD X-101 0.493, ATSS
# Swin-L DyHead 0.468). mmdet 3's "CenterNet update" is its CenterNet++-style CenterNet.
# The detector is mmdet's `centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py`, copied
# unchanged but for the class count (filled in from the data by train.train) and the detections
# kept per image. Data, augmentation, schedule, hooks and evaluation come from this project's
# base, so the rows of the comparison differ only in the detector. (mmengine cannot inherit both
# files: their keys collide. Copying the model keeps the data side shared by construction.)
_base_ = '../tood_r50_fpn_acne04.py'

# COCO-trained CenterNet update R-50 from the mmdet model zoo (box AP 40.2 on COCO).
load_from = ('https://download.openmmlab.com/mmdetection/v3.0/centernet/'
             'centernet-update_r50-caffe_fpn_ms-1x_coco/'
             'centernet-update_r50-caffe_fpn_ms-1x_coco_20230512_203845-8306baf2.pth')

model = dict(
    _delete_=True,
    type='CenterNet',
    # caffe-style normalisation, as the backbone was trained
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.530, 116.280, 123.675],
                           std=[1.0, 1.0, 1.0], bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    neck=dict(
        type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
        add_extra_convs='on_output', num_outs=5, init_cfg=dict(type='Caffe2Xavier', layer='Conv2d'),
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='CenterNetUpdateHead', num_classes=1, in_channels=256, stacked_convs=4, feat_channels=256,
        strides=[8, 16, 32, 64, 128], hm_min_radius=4, hm_min_overlap=0.8, more_pos_thresh=0.2,
        more_pos_topk=9, soft_weight_on_reg=False,
        loss_cls=dict(type='GaussianFocalLoss', pos_weight=0.25, neg_weight=0.75, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=None,
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=300))  # severe faces carry more than 100 lesions

# mmdet's setting for this model: no weight decay on norm layers (the base's SGD, lr 0.01, stays).
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
