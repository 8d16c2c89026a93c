# Study row "background removal: with" (mAP50 0.446 -> 0.450 in the original study).
# The default TOOD X-101 with what is not skin blacked out, in training and at inference: the
# MaskNonSkin transform (YCrCb skin colour + morphology, no download; why and its limits:
# train/skin_mask.py) sits right after loading in both pipelines. The shared inference core
# builds its preprocessing from the test pipeline, so the served model masks every photo too.
_base_ = '../tood_x101-64x4d_fpn_acne04.py'

image_size = (640, 640)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MaskNonSkin'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=16, contrast_range=(0.9, 1.1),
         saturation_range=(0.9, 1.1), hue_delta=4),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MaskNonSkin'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
