"""TS-TCC, Eldele et al., "Time-Series Representation Learning via Temporal and Contextual
Contrasting", IJCAI 2021.

Each series gets a weak view (every step of every series scaled by a factor ~ N(2, σ_scale),
shared by its channels, as the paper's code) and a strong view (cut into 1 to max_segments − 1
segments at random points, the segments shuffled, then jitter ~ N(0, σ_jitter)); the
three-block convolutional encoder (backbone ``tcc-conv``) gives L2-normalised per-step
encodings z.  Temporal contrasting: a transformer (a context token and 4 pre-norm layers of
4 heads, width ``tc_hidden`` 100, feed-forward 64, dropout ``tc_dropout`` 0.1) summarises one
view's first t + 1 steps (t random per batch) into c_t, whose linear maps W_k predict the
other view's z_{t+k}, k = 1 … ``timesteps``, each scored against the batch's z_{t+k}
(log-softmax over the batch, the paper's InfoNCE), both ways.  Contextual contrasting: NT-Xent
(τ 0.2, cosine) on a two-layer projection of the two views' c_t (``tc_hidden`` → D/2 → D/4,
D the encoder's output width: 100 → 64 → 32, as the code's projection head).  Loss:
TC_1 + TC_2 + 0.7 CC.  Defaults from the paper's HAR setting (σ_scale 1.1, σ_jitter 0.8,
8 segments, 6 steps ahead), Adam lr 3e-4, betas (0.9, 0.99), weight decay 3e-4, batch 128,
40 epochs.  The transformer's dropout follows the code: after the attention's output
projection, after the feed-forward's activation and after its output, none on the attention
weights; it draws from PyTorch's default generator, which the engine seeds before every step
from the step's key, so a resumed run draws the same.  The encoder's dropout (0.35 after its
first block) is drawn from the method's generator.

Our choices: every channel is permuted (the code permutes the first only); ``timesteps`` is
capped at the encodings there are, less one, on short series; one time step t is shared by the
two directions (the code draws one per direction); the two views are drawn anew at every step
(the code draws them once, when it loads the data); the weak view only scales, as the code (the
paper's text says jitter and scale).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses import nt_xent
from ..models.tcc_conv import TCCConvEncoder
from .base import Method
from .. import rng


def permute_segments(x: torch.Tensor, max_segments: int, generator: torch.Generator) -> torch.Tensor:
    """Each series [C, T] of x cut at random points into 1 … max_segments − 1 segments, which
    are put back in a random order (all channels alike)."""
    b, _, length = x.shape
    out, host = torch.empty_like(x), rng.host_twin(generator)
    counts = rng.randint(1, max(2, max_segments), b, host)
    for i in range(b):
        cuts = (rng.randperm(length - 1, host)[: int(counts[i]) - 1] + 1).sort().values
        pieces = torch.tensor_split(torch.arange(length), cuts)
        order = rng.randperm(len(pieces), host)
        out[i] = x[i, :, rng.onto(torch.cat([pieces[j] for j in order]), x.device)]
    return out


class TSTCC(Method):
    """TS-TCC (Eldele et al. 2021): temporal and contextual contrasting of a weak and a strong view."""

    name = "ts-tcc"
    revision = 2  # 2: the transformer's dropout 0.1 (the paper's; 1: none) and the contextual projection
    # sized from the encoder's width, D -> D/2 -> D/4 (the code's 128 -> 64 -> 32; 1: tc_hidden/2, tc_hidden/4)
    modalities = ("series",)
    defaults = {"scale_sigma": 1.1, "jitter_sigma": 0.8, "max_segments": 8, "timesteps": 6, "dropout": 0.35,
                "tc_hidden": 100, "tc_depth": 4, "tc_heads": 4, "tc_feedforward": 64, "tc_dropout": 0.1,
                "temperature": 0.2, "lambda_cc": 0.7}
    limits = {"scale_sigma": (0, None), "jitter_sigma": (0, None), "max_segments": (1, None), "timesteps": (1, None),
              "dropout": (0, 0.99),
              "tc_hidden": (1, None), "tc_depth": (1, None), "tc_heads": (1, None), "tc_feedforward": (1, None),
              "tc_dropout": (0, 0.99),
              "temperature": (1e-4, None), "lambda_cc": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        if not isinstance(backbone, TCCConvEncoder):
            raise SelfSupError("ts-tcc contrasts the per-step encodings of TS-TCC's encoder: --backbone tcc-conv")
        steps = backbone.forward_sequence(torch.zeros(1, run.channels, run.image_size)).shape[1]
        if steps < 2:
            raise SelfSupError(f"ts-tcc needs at least 2 encodings per series; {run.image_size} steps give {steps}")
        self.timesteps = min(cfg["timesteps"], steps - 1)
        hidden, dim = cfg["tc_hidden"], self.feature_dim
        if hidden % cfg["tc_heads"]:
            raise SelfSupError(f"params.tc_hidden {hidden} must be a multiple of params.tc_heads {cfg['tc_heads']}")
        self.context_input = nn.Linear(dim, hidden)
        self.context_token = nn.Parameter(torch.randn(1, 1, hidden))
        layer = nn.TransformerEncoderLayer(hidden, cfg["tc_heads"], cfg["tc_feedforward"], dropout=cfg["tc_dropout"],
                                           batch_first=True, norm_first=True)
        layer.self_attn.dropout = 0.0  # the code drops the attention's output, not its weights
        self.context = nn.TransformerEncoder(layer, cfg["tc_depth"], enable_nested_tensor=False)
        self.predictors = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(self.timesteps))
        self.projector = nn.Sequential(nn.Linear(hidden, dim // 2), nn.BatchNorm1d(dim // 2),
                                       nn.ReLU(inplace=True), nn.Linear(dim // 2, dim // 4))
        self.views = [ViewSpec(None)]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised per-step encodings [B, T', D], with dropout after the first block."""
        stages = self.backbone.stages
        h = stages[0](x)
        h = h * (rng.rand(h.shape, self.generator, device=h.device) >= self.cfg["dropout"]) / (1 - self.cfg["dropout"])
        for stage in stages[1:]:
            h = stage(h)
        return F.normalize(h.transpose(1, 2), dim=-1)

    def summary(self, z: torch.Tensor) -> torch.Tensor:
        """c: the context token's output after the transformer over z [B, t + 1, D]."""
        tokens = torch.cat([self.context_token.expand(z.shape[0], -1, -1), self.context_input(z)], 1)
        return self.context(tokens)[:, 0]

    def temporal_contrast(self, source: torch.Tensor, target: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the TC loss of predicting ``target``'s steps t+1 … t+K from ``source``'s context c_t, c_t)."""
        context = self.summary(source[:, : t + 1])
        loss = source.new_zeros(())
        for k, predictor in enumerate(self.predictors, start=1):
            scores = target[:, t + k] @ predictor(context).T  # [B, B]: row i, the true step of series i
            loss = loss - F.log_softmax(scores.float(), dim=1).diagonal().sum()
        return loss / (source.shape[0] * self.timesteps), context

    def training_step(self, batch, step):
        x = batch["views"][0]
        g = self.generator
        weak = x * (2 + self.cfg["scale_sigma"] * rng.randn((x.shape[0], 1, x.shape[2]), g, device=x.device))
        strong = permute_segments(x, self.cfg["max_segments"], g)
        strong = strong + self.cfg["jitter_sigma"] * rng.randn(x.shape, g, device=x.device)
        z_weak, z_strong = self.encode(weak), self.encode(strong)
        t = int(rng.integers(0, z_weak.shape[1] - self.timesteps - 1, 1, g))
        tc_weak, c_weak = self.temporal_contrast(z_weak, z_strong, t)
        tc_strong, c_strong = self.temporal_contrast(z_strong, z_weak, t)
        contextual = nt_xent(self.projector(c_weak), self.projector(c_strong), self.cfg["temperature"])
        loss = tc_weak + tc_strong + self.cfg["lambda_cc"] * contextual
        return {"loss": loss, "temporal": (tc_weak + tc_strong).detach(), "contextual": contextual.detach()}
