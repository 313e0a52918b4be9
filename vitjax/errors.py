"""Errors raised on bad input. Each message names the file, key or field and what was expected."""


class VitjaxError(Exception):
    """Base class of every error vitjax raises on bad input."""


class DatasetError(VitjaxError):
    """A dataset file or folder is missing, unreadable or malformed."""


class CheckpointError(VitjaxError):
    """A checkpoint is of the wrong family, truncated, or has missing/unexpected/mis-shaped keys."""


class StoreError(VitjaxError):
    """The feature store is corrupted, full, or holds features of another model or geometry."""


class ConfigError(VitjaxError):
    """A config field is missing or has a value outside what the experiment accepts."""


class InputError(VitjaxError, ValueError):
    """An array given to an engine holds non-finite values, or labels of a non-integer dtype."""
