# A tiny TOOD that trains in seconds on a CPU: for tests and for checking the pipeline end to end.
# Its numbers mean nothing.
_base_ = './tood_r50_fpn_acne04.py'

load_from = None
from_scratch = True  # random weights by design: read by train.train, recorded in every report
image_size = (320, 320)

model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=2),
    train_cfg=dict(initial_epoch=1),
    test_cfg=dict(nms_pre=300, max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 20
val_interval = 20
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=val_interval))
