# TOOD R-50 FPN fine-tuned on a lesion data set in this project's COCO layout.
# `python -m train.train` fills in the data paths, class names and class count from the data,
# so the same config trains on ACNE04 (one class) or on three trouble types.
_base_ = 'mmdet::tood/tood_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['trouble.models'], allow_failed_imports=False)

# COCO-pretrained TOOD from the mmdet model zoo; `--weights` overrides, `--from-scratch` drops it.
load_from = ('https://download.openmmlab.com/mmdetection/v2.0/tood/tood_r50_fpn_1x_coco/'
             'tood_r50_fpn_1x_coco_20211210_103425-20e20746.pth')

image_size = (640, 640)  # ACNE04 photos are 640x640; lesions are about 30 px
classes = ('acne', )     # replaced from the data by train.train

model = dict(bbox_head=dict(num_classes=len(classes)),
             test_cfg=dict(score_thr=0.05, max_per_img=300))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=16, contrast_range=(0.9, 1.1),
         saturation_range=(0.9, 1.1), hue_delta=4),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

dataset_type = 'CocoDataset'
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root='', ann_file='train/annotations.json',
                 data_prefix=dict(img='train/'), metainfo=dict(classes=classes),
                 filter_cfg=dict(filter_empty_gt=False, min_size=1),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=False,
    dataset=dict(type=dataset_type, data_root='', ann_file='valid/annotations.json',
                 data_prefix=dict(img='valid/'), metainfo=dict(classes=classes),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file='valid/annotations.json', metric='bbox',
                     classwise=True, format_only=False)
test_evaluator = val_evaluator

# Iteration-based so that a run can be sized in iterations or in minutes (--budget-minutes).
max_iters = 3000
val_interval = 500
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=val_interval)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=200, end=max_iters, eta_min_ratio=0.05,
         T_max=max_iters - 200),
]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
                     clip_grad=dict(max_norm=35, norm_type=2))
# Batch 16 is the reference for lr 0.01; mmengine scales lr when enable=True.
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval, max_keep_ckpts=2,
                    save_best='coco/bbox_mAP_50', rule='greater', save_last=True))
custom_hooks = [dict(type='EpochFromIterHook'), dict(type='StopOnNonFiniteLossHook', patience=5)]
log_processor = dict(by_epoch=False)
