"""Command line: convert one official PyTorch/safetensors ViT checkpoint to a vitjax checkpoint.

  python -m checkpoints_convert --family=dinov2_reg
      --input=dinov2_vitb14_reg4_pretrain.pth --output=/ckpt/dinov2_reg_vitb14

Size and patch size are read off the patch embedding when not given. The output directory holds
the orbax parameters, `spec.json` (with the input's sha256 as `weights_hash`) and
`conversion.json` (converted and ignored keys).
"""

from collections.abc import Sequence

from absl import app, flags, logging

from checkpoints_convert import convert, layouts
from vitjax.errors import CheckpointError

_FAMILY = flags.DEFINE_enum("family", None, layouts.FAMILIES, "Model family of the checkpoint.")
_INPUT = flags.DEFINE_string("input", None, "Checkpoint file (.pth, .pt or .safetensors).")
_OUTPUT = flags.DEFINE_string("output", None, "Output checkpoint directory.")
_SIZE = flags.DEFINE_string("size", None, "Model size (ti, s, b, l, h); default: inferred.")
_PATCH_SIZE = flags.DEFINE_integer("patch_size", None, "Patch size; default: inferred.")
_CHECKPOINT_KEY = flags.DEFINE_string(
    "checkpoint_key",
    None,
    "Entry or branch to read (teacher, student, model, state_dict); default: flat state dict, "
    "else teacher, model, state_dict, student.",
)
_DEPTH = flags.DEFINE_integer(
    "depth", None, "Number of blocks; default: the size's standard depth."
)
_DECODER_DEPTH = flags.DEFINE_integer(
    "decoder_depth", None, "MAE decoder blocks; default: the spec's (8)."
)


def main(argv: Sequence[str]) -> None:
    """Runs the conversion described by the flags; exits non-zero with the error on bad input."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    try:
        convert.convert_file(
            _FAMILY.value,
            _INPUT.value,
            _OUTPUT.value,
            size=_SIZE.value,
            patch_size=_PATCH_SIZE.value,
            checkpoint_key=_CHECKPOINT_KEY.value,
            depth=_DEPTH.value,
            decoder_depth=_DECODER_DEPTH.value,
        )
    except CheckpointError as err:
        logging.error("%s", err)
        raise SystemExit(f"checkpoint conversion failed: {err}") from err


if __name__ == "__main__":
    flags.mark_flags_as_required(["family", "input", "output"])
    app.run(main)
