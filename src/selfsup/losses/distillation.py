"""Self-distillation: DINO's cross-entropy between a centred, sharpened teacher and the student
(Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
Algorithm 1), iBOT's on the masked patch tokens (Zhou et al., "iBOT: Image BERT Pre-Training
with Online Tokenizer", ICLR 2022, eq. 2), and the teacher's centre as an EMA of its batch means."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import all_reduce


def dino(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
         student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """Mean over pairs of different views of H(softmax((t - c) / τ_t), softmax(s / τ_s)).

    ``student``: the scores [B, K] of every view (the global views first, in the order of
    ``teacher``); ``teacher``: the scores of the global views, treated as constants; ``center``
    [K].  Each teacher view is the target of every student view but its own (DINO's
    ``MultiCropWrapper`` loss); the cross-entropy is averaged over the batch and the pairs."""
    targets = [F.softmax((t.detach() - center) / teacher_temperature, dim=1) for t in teacher]
    log_probs = [F.log_softmax(s / student_temperature, dim=1) for s in student]
    terms = [-(target * log_probs[v]).sum(1).mean() for i, target in enumerate(targets)
             for v in range(len(log_probs)) if v != i]
    return torch.stack(terms).mean()


def ibot_patch(student: list[torch.Tensor], teacher: list[torch.Tensor], masks: list[torch.Tensor],
               center: torch.Tensor, student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """iBOT's masked-image-modelling term: for each view, H(softmax((t - c) / τ_t), softmax(s / τ_s))
    of each masked patch, averaged over an image's masked patches (0 for an image without any),
    then over the images and the views.

    ``student`` and ``teacher``: per view, patch scores [B, N, K] (the student's from the masked
    view, the teacher's from the whole one, treated as constants); ``masks``: per view, [B, N]
    true where the student's patch was masked; ``center`` [K]."""
    terms = []
    for s, t, mask in zip(student, teacher, masks):
        target = F.softmax((t.detach() - center) / teacher_temperature, dim=-1)
        per_patch = -(target * F.log_softmax(s / student_temperature, dim=-1)).sum(-1)
        mask = mask.to(per_patch.dtype)
        terms.append(((per_patch * mask).sum(1) / mask.sum(1).clamp_min(1.0)).mean())
    return torch.stack(terms).mean()


@torch.no_grad()
def dino_center(teacher: list[torch.Tensor], center: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """The next centre: ``momentum`` · centre + (1 − ``momentum``) · the mean teacher score over
    the global batch (all ranks) and views."""
    scores = torch.cat(teacher).float()  # a half-precision count is inexact (bf16) or overflows (fp16)
    total = all_reduce(torch.cat([scores.sum(0), scores.new_tensor([scores.shape[0]])]))
    return center * momentum + total[:-1] / total[-1] * (1 - momentum)
