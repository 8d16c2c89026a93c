# Study row "copy & paste: with" (mAP50 0.446 -> 0.480 in the original study).
# The default TOOD X-101 with lesion copy-paste in the train pipeline: each image adds its
# lesions to a bank, and half of the images get 3 to 10 lesions from the bank pasted on their
# skin (flipped, rotated, resized, colour-matched, feathered; see trouble/models/transforms.py).
# The offline version of the same: python -m train.copy_paste (a new data set on disk).
_base_ = '../tood_x101-64x4d_fpn_acne04.py'

image_size = (640, 640)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    # Before any resizing, so that patches are cut and pasted at the photo's own scale.
    dict(type='LesionCopyPaste', prob=0.5, num_pastes=(3, 10), onto='all', bank_size=500),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=16, contrast_range=(0.9, 1.1),
         saturation_range=(0.9, 1.1), hue_delta=4),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
