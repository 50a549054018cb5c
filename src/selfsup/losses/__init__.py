"""Pure loss functions: tensors in, a scalar batch mean out (``tico`` also returns its updated
covariance, ``sinkhorn`` the codes of a batch).  They import nothing of selfsup
but the rank helpers of ``selfsup.distributed`` (identity on one process) and the device-safe
draws of ``selfsup.rng``, so they can be used in any training loop."""
from .coding_rate import emp_ssl, total_coding_rate
from .distillation import dino, dino_center, ibot_patch
from .gaussian import gaussian_jsd, gaussian_kl
from .info_nce import batch_info_nce, info_nce, sampled_info_nce
from .masked import masked_l1, masked_mse
from .nce import bank_softmax, estimate_log_z, nce_memory
from .prototypes import me_max, msn
from .semisup import (align_distribution, flexmatch_thresholds, freematch_fairness, freematch_thresholds, sharpen,
                      softmatch_weights, tsa_threshold)
from .sigreg import epps_pulley, lejepa, sigreg
from .temporal import hierarchical_contrastive, instance_contrastive, t_loss, temporal_contrastive
from .non_contrastive import barlow_twins, negative_cosine, tico, vicreg, vicreg_terms
from .nt_xent import dcl, decoupled_nt_xent, nt_xent
from .supervised import supcon, triplet
from .swav import sinkhorn, swav
from .whitening import cholesky_whiten, w_mse

__all__ = ["align_distribution", "flexmatch_thresholds", "freematch_fairness", "freematch_thresholds", "sharpen",
           "softmatch_weights", "tsa_threshold", "hierarchical_contrastive", "instance_contrastive", "t_loss",
           "temporal_contrastive", "bank_softmax", "barlow_twins", "batch_info_nce", "cholesky_whiten", "dcl", "decoupled_nt_xent", "dino", "dino_center", "emp_ssl", "epps_pulley", "gaussian_jsd", "gaussian_kl", "ibot_patch", "info_nce", "lejepa", "masked_l1", "masked_mse", "me_max", "msn",
           "estimate_log_z", "nce_memory", "negative_cosine", "nt_xent", "sampled_info_nce", "sigreg", "sinkhorn", "supcon", "swav", "tico", "total_coding_rate", "triplet",
           "vicreg", "vicreg_terms", "w_mse"]
