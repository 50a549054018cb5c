"""selfsup: self-supervised representation learning under one engine and one evaluation protocol."""
__version__ = "0.1.0"
