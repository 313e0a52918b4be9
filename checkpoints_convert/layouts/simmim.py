"""SimMIM (microsoft/SimMIM): BEiT-style blocks, shared relative position bias, no absolute table."""

from collections.abc import Mapping

import numpy as np

from checkpoints_convert.layouts.base import (
    TIMM_MODEL_NAMES,
    BlockNames,
    EncoderDims,
    Layout,
    Rule,
    expected_relative_position_index,
    one_rule,
    register_layout,
    square_side,
)

SIMMIM_BLOCK = BlockNames(prefix="blocks.{i}.", qkv_bias=None, ls1="gamma_1", ls2="gamma_2")
_TABLE = "rel_pos_bias.relative_position_bias_table"
_INDEX = "rel_pos_bias.relative_position_index"


def _rel_pos_bias_rules(dims: EncoderDims) -> list[Rule]:
    rows, cols = dims.grid
    table_rows = (2 * rows - 1) * (2 * cols - 1) + 3
    return [one_rule(("rel_pos_bias", "table"), _TABLE, (table_rows, dims.num_heads))]


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    """The native grid from the relative-position table's (2g - 1)^2 + 3 rows."""
    table = tensors.get(_TABLE)
    if table is None or table.ndim != 2:
        return {}
    side = square_side(table.shape[0] - 3)
    return {"grid": ((side + 1) // 2,) * 2 if side and side % 2 == 1 else None}


def _check_values(
    tensors: Mapping[str, np.ndarray], grid: tuple[int, int]
) -> list[tuple[str, str]]:
    """The stored relative position index must be the BEiT/SimMIM one for `grid`."""
    index = tensors.get(_INDEX)
    if index is None:
        return []
    want = expected_relative_position_index(*grid)
    if index.shape != want.shape or not np.array_equal(index, want):
        return [
            (
                _INDEX,
                f"does not equal the BEiT/SimMIM relative position index for a {grid} grid (shape "
                f"{tuple(index.shape)}, expected {want.shape})",
            )
        ]
    return []


LAYOUT = register_layout(
    Layout(
        name="simmim",
        block=SIMMIM_BLOCK,
        # No absolute position embedding.
        model_names=(*TIMM_MODEL_NAMES[:2], None, TIMM_MODEL_NAMES[3]),
        ignorable=(
            (r"mask_token", "SimMIM mask token"),
            (r"decoder\..*", "SimMIM pixel decoder (1x1 conv + PixelShuffle)"),
            (
                r"rel_pos_bias\.relative_position_index",
                "relative position index (checked against the expected index, not stored)",
            ),
        ),
        extra_rules=_rel_pos_bias_rules,
        infer=_infer,
        check_values=_check_values,
    )
)
