"""TOOD's head with its box geometry kept in float32, for AMP.

Under float16 autocast two steps of TOODHead overflow float16 (largest value 65504) once a box
regression output grows past about 11, which happens in the first iterations from scratch and
turned the box loss into NaN on an H200 (bench/results/h200-2026-11-26):
- `scale(self.tood_reg(feat).exp())`: the convolution's output is float16, so exp() overflows.
  A forward hook returns that output in float32, so exp() runs in float32.
- `deform_sampling(reg_bbox, reg_offset)`: mmcv's deform_conv2d casts its input to the offset's
  dtype (`input.type_as(offset)`), and the offset comes from a float16 convolution, so the
  float32 boxes were cast back to float16 there. Both are given to it in float32.
The weights and their names are unchanged: checkpoints load into TOODHead and back.
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

    def deform_sampling(self, feat, offset):
        return super().deform_sampling(feat.float(), offset.float())
