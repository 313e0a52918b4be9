"""The built-in datasets: importing this package registers them (`vitjax.data.registry`)."""

from vitjax.data.loaders import object_tiles, scenes, segmentation, tracking

__all__ = ["object_tiles", "scenes", "segmentation", "tracking"]
