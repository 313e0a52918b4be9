"""DINOv2 with registers: the DINOv2 names plus `register_tokens` [1, R, D]."""

from collections.abc import Mapping

import numpy as np

from checkpoints_convert.layouts.base import (
    EncoderDims,
    Layout,
    Rule,
    one_rule,
    register_layout,
)
from checkpoints_convert.layouts.dinov2 import DINOV2_BLOCK, DINOV2_IGNORABLE


def _register_rules(dims: EncoderDims) -> list[Rule]:
    return [one_rule(("register_tokens",), "register_tokens", (1, dims.num_registers, dims.width))]


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    registers = tensors.get("register_tokens")
    if registers is None or registers.ndim != 3:
        return {}
    return {"num_registers": int(registers.shape[1])}


LAYOUT = register_layout(
    Layout(
        name="dinov2_reg",
        block=DINOV2_BLOCK,
        ignorable=DINOV2_IGNORABLE,
        extra_rules=_register_rules,
        infer=_infer,
    )
)
