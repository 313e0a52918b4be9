"""PyTorch -> Flax conversion of the official ViT checkpoints (needs torch; vitjax never imports it).

Command line:
  python -m checkpoints_convert --family=dino --input=dino_vitbase16_pretrain.pth
      --output=/ckpt/dino_vitb16 [--size=b --patch_size=16 --checkpoint_key=teacher]

Library:
  >>> from checkpoints_convert import convert_file
  >>> conversion = convert_file("dino", "dino_vitbase16_pretrain.pth", "/ckpt/dino_vitb16")
  >>> print(conversion.summary())
"""

from checkpoints_convert.convert import Conversion, convert_checkpoint, convert_file
from checkpoints_convert.layouts import FAMILIES, canonicalize, expected_relative_position_index
from checkpoints_convert.reader import file_sha256, read_checkpoint

__all__ = [
    "FAMILIES",
    "Conversion",
    "canonicalize",
    "convert_checkpoint",
    "convert_file",
    "expected_relative_position_index",
    "file_sha256",
    "read_checkpoint",
]
