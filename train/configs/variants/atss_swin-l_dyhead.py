# Study row "detector: ATSS Swin-L DyHead" (mAP50 0.468 in the original study; TOOD X-101 0.493,
# CenterNet++ 0.425).
# The detector is mmdet's `dyhead/atss_swin-l-p4-w12_fpn_dyhead_ms-2x_coco.py`, copied unchanged
# but for the class count (filled in from the data by train.train) and the detections kept per
# image. Data, augmentation, schedule, hooks and evaluation come from this project's base, so the
# rows of the comparison differ only in the detector. (mmengine cannot inherit both files: their
# keys collide. Copying the model keeps the data side shared by construction.)
# Swin-L is large (about 220M parameters): it needs a GPU; on a CPU the experiment runner's
# --smoke mode shrinks it to a toy Swin, and its table says so.
_base_ = '../tood_r50_fpn_acne04.py'

# COCO-trained ATSS Swin-L DyHead from the mmdet model zoo (box AP 56.2 on COCO).
load_from = ('https://download.openmmlab.com/mmdetection/v2.0/dyhead/'
             'atss_swin-l-p4-w12_fpn_dyhead_mstrain_2x_coco/'
             'atss_swin-l-p4-w12_fpn_dyhead_mstrain_2x_coco_20220509_100315-bc5b6516.pth')
swin_imagenet = ('https://github.com/SwinTransformer/storage/releases/download/v1.0.0/'
                 'swin_large_patch4_window12_384_22k.pth')

model = dict(
    _delete_=True,
    type='ATSS',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=128),
    backbone=dict(
        type='SwinTransformer', pretrain_img_size=384, embed_dims=192, depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48], window_size=12, mlp_ratio=4, qkv_bias=True, qk_scale=None,
        drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2, patch_norm=True, out_indices=(1, 2, 3),
        with_cp=False, convert_weights=True,
        init_cfg=dict(type='Pretrained', checkpoint=swin_imagenet)),
    neck=[
        dict(type='FPN', in_channels=[384, 768, 1536], out_channels=256, start_level=0,
             add_extra_convs='on_output', num_outs=5),
        dict(type='DyHead', in_channels=256, out_channels=256, num_blocks=6, zero_init_offset=False),
    ],
    bbox_head=dict(
        type='ATSSHead', num_classes=1, in_channels=256, pred_kernel_size=1, stacked_convs=0,
        feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128], center_offset=0.5),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1, pos_weight=-1,
                   debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=300))  # severe faces carry more than 100 lesions

# mmdet's optimiser for this model: AdamW, no weight decay on norms and position tables.
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00005, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'absolute_pos_embed': dict(decay_mult=0.),
                                    'relative_position_bias_table': dict(decay_mult=0.),
                                    'norm': dict(decay_mult=0.)}))
