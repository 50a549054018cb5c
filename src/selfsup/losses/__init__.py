"""Pure loss functions: tensors in, a scalar batch mean out.  They import nothing else of
selfsup, so they can be used in any training loop."""
from .distributed import gather_with_grad, world_info
from .nt_xent import nt_xent

__all__ = ["gather_with_grad", "nt_xent", "world_info"]
