"""Custom mmdet parts, registered with mmdet's registries when this package is imported.

Configs load them with `custom_imports = dict(imports=['trouble.models'])`.
"""
from trouble.models import efficientnet_lite, float32_losses, hooks, tood_head_amp  # noqa: F401
from trouble.models import study_losses, transforms  # noqa: F401  (train/experiments.py: the study's variants)
