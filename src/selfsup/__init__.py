"""selfsup: self-supervised representation learning under one engine and one evaluation protocol.

``selfsup.pretrain``, ``selfsup.load_backbone``, ``selfsup.evaluate``, ``selfsup.export_backbone``
and ``selfsup.configure`` are the Python API (``selfsup.api``), imported on first use so that ``import selfsup`` stays light.
"""
__version__ = "0.1.0"
_API = ("configure", "evaluate", "export_backbone", "load_backbone", "pretrain")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'selfsup' has no attribute '{name}'")
