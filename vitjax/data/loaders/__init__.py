"""The built-in datasets, one module per family of loaders.

`vitjax.data.registry` imports every module of this package on its first lookup, so a module
added here registers its datasets without being named anywhere else.
"""
