"""Command line: convert one official PyTorch/safetensors ViT checkpoint to a vitjax checkpoint.

  python -m checkpoints_convert --family=dinov2_reg
      --input=dinov2_vitb14_reg4_pretrain.pth --output=/ckpt/dinov2_reg_vitb14

Size and patch size are read off the patch embedding when not given. The output directory holds
the orbax parameters, `spec.json` (with the input's sha256 as `weights_hash` and the converted
parameters' digest as `params_sha256`) and `conversion.json` (converted and ignored keys).

The output directory must be new or empty; `--overwrite` replaces a previous conversion, and
nothing else: a directory holding the input or any other file is never written into. A user error
(bad file, wrong family, output in the way) prints one message and exits with status 1.
"""

from collections.abc import Sequence

from absl import app, flags

from checkpoints_convert import convert, layouts
from vitjax.errors import VitjaxError

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
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace a previous conversion in --output (a folder holding anything else is never replaced).",
)
_ALLOW_CLASSIFIER_HEAD = flags.DEFINE_bool(
    "allow_classifier_head",
    False,
    "Convert a dino/ibot/mae/dinov2 file that carries a classification head (a supervised or "
    "fine-tuned model; the head is dropped). The official files of these families have none.",
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
            overwrite=_OVERWRITE.value,
            allow_classifier_head=_ALLOW_CLASSIFIER_HEAD.value,
        )
    except (VitjaxError, OSError) as err:
        # One message, no traceback: SystemExit prints its text to stderr and exits with 1.
        raise SystemExit(f"checkpoint conversion failed: {err}") from None


if __name__ == "__main__":
    flags.mark_flags_as_required(["family", "input", "output"])
    app.run(main)
