"""TOOD's head with its box-distance regression taken to float32 before `exp()`, for AMP.

TOODHead computes `scale(self.tood_reg(feat).exp())`: under float16 autocast the convolution's
output is float16, and exp() overflows to inf beyond 11, which turns the box loss into NaN (seen
on an H200 training TOOD X-101 from scratch). A forward hook returns that output in float32, so
exp() runs in float32; the weights and their names are unchanged.
"""
from mmdet.models.dense_heads import TOODHead
from mmdet.registry import MODELS


def _output_to_float32(module, inputs, output):
    return output.float()


@MODELS.register_module()
class TOODHeadAMP(TOODHead):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tood_reg.register_forward_hook(_output_to_float32)
