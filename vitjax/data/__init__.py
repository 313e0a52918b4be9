"""Data as plain numpy: readers of the real dataset formats, few-shot protocol, synthetic data,
tiling/stitching and patch labels. Nothing here knows about models."""

from vitjax.data import fewshot, images, patch_labels, synthetic, textures, tiling
from vitjax.data.ade20k import ADE20KReader
from vitjax.data.bdd100k import BDD100KReader, FrameTracks, tracking_pairs
from vitjax.data.cityscapes import CityscapesReader
from vitjax.data.fair1m import FAIR1MReader
from vitjax.data.mot17 import MOT17Reader
from vitjax.data.resisc45 import RESISC45Reader
from vitjax.data.ucmerced import UCMercedReader

__all__ = [
    "ADE20KReader",
    "BDD100KReader",
    "CityscapesReader",
    "FAIR1MReader",
    "FrameTracks",
    "MOT17Reader",
    "RESISC45Reader",
    "UCMercedReader",
    "fewshot",
    "images",
    "patch_labels",
    "synthetic",
    "textures",
    "tiling",
    "tracking_pairs",
]
