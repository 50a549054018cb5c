"""LeJEPA: Balestriero & LeCun, "LeJEPA: Provable and Scalable Self-Supervised Learning Without
the Heuristics", 2025.

Every view's projection predicts the mean projection of the image's global views, and SIGReg
(``sigreg``: Epps-Pulley tests of random 1-D projections against N(0, 1)) pushes each view's
projections towards an isotropic Gaussian, weighted λ against 1 − λ for the prediction
(``lejepa``).  No teacher, no stop-gradient, no predictor network.  From the paper and its
code: λ 0.05; 2 global views (crops of 30-100%) and 6 local ones (crops of 5-30% at 98/224 of the side),
all with colour jitter (0.4, 0.4, 0.2, 0.1 at p 0.8), greyscale 0.2, blur 0.5 and solarisation
0.2; projector a 3-layer MLP (2048 wide, BatchNorm, ReLU); SIGReg over 1024 directions drawn
afresh each step, Epps-Pulley by the trapezoidal rule on 17 points of [0, 3]; AdamW lr 5e-4,
weight decay 0.05 (5e-4 for ResNets), warm-up then cosine to 1/1000 of the rate.  Our choices:
128 projection dimensions (the minimal example: 16 on Imagenette), local crops at
multi-crop's 96/224 of the side (12 px either way at 28); the directions come
from a generator seeded by the run's seed and the step, so every rank draws the same.
"""
from __future__ import annotations

from .. import rng
from ..data.augment import AugmentConfig, views
from ..data.views import ViewSpec
from ..losses import lejepa
from ..models.heads import mlp
from .base import Method
from .helpers import encode_by_resolution, small_crops

LEJEPA_VIEWS = views(crop_scale=(0.3, 1.0), saturation=0.2, solarize_p=0.2)


class LeJEPA(Method):
    """LeJEPA (Balestriero & LeCun 2025): views predict their global views' mean, under SIGReg."""

    name = "lejepa"
    defaults = {"proj_hidden_dim": 2048, "proj_dim": 128, "sigreg_weight": 0.05, "directions": 1024, "knots": 17,
                "t_max": 3.0, "global_views": 2, "local_views": 6, "local_crop_size": None,
                "local_crop_scale": [0.05, 0.3], "augment": LEJEPA_VIEWS}
    limits = {"proj_hidden_dim": (1, None), "proj_dim": (1, None), "sigreg_weight": (0, 1), "directions": (1, None),
              "knots": (2, None), "t_max": (1e-3, None), "global_views": (1, None), "local_views": (0, None),
              "local_crop_size": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"], cfg["proj_dim"], layers=3)
        pipeline = AugmentConfig(**cfg["augment"])
        self.views = [ViewSpec(pipeline, count=cfg["global_views"])]
        self.views += small_crops(pipeline, cfg["local_views"], cfg["local_crop_scale"], cfg["local_crop_size"],
                                  run.image_size)

    def training_step(self, batch, step):
        crops, cfg = batch["views"], self.cfg
        embeddings = self.projector(encode_by_resolution(self.backbone, crops)).view(len(crops), crops[0].shape[0], -1)
        generator = rng.seeded_generator(embeddings.device, self.run.seed, step, "sigreg")
        directions = rng.randn((cfg["proj_dim"], cfg["directions"]), generator, device=embeddings.device)
        directions = directions / directions.norm(dim=0)
        return {"loss": lejepa(embeddings, cfg["global_views"], directions, cfg["sigreg_weight"], cfg["knots"],
                               cfg["t_max"], gather=True)}
