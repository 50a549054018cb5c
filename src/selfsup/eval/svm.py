"""SVM probe on frozen features: the evaluation of the series representation papers (T-Loss,
TS2Vec and the methods compared with them on the UCR/UEA archives).  TS2Vec's protocol, with
scikit-learn: an RBF-kernel SVC (gamma "scale") on the features as the encoder gives them;
its C chosen by 5-fold cross-validated grid search over 10^-4 … 10^4 and ∞ (a hard margin),
except with fewer than 5 training samples per class or 50 in all, where C is ∞ without a
search; over 10,000 training samples, a stratified subsample of 10,000 (seed 0) is searched
and fitted.
"""
from __future__ import annotations

import math

import numpy as np
import torch

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, math.inf)
MAX_TRAIN = 10_000


def svm_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> dict:
    """Test top-1 of the SVM probe trained on ``train_x``, and the C it chose ("inf": a hard margin)."""
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC

    x, y = train_x.double().numpy(), train_y.numpy()
    classes = len(np.unique(y))
    if len(y) // classes < 5 or len(y) < 50:
        svm = SVC(C=math.inf, gamma="scale").fit(x, y)
        chosen = math.inf
    else:
        if len(y) > MAX_TRAIN:
            x, _, y, _ = train_test_split(x, y, train_size=MAX_TRAIN, random_state=0, stratify=y)
        search = GridSearchCV(SVC(gamma="scale"), {"C": list(C_GRID)}, cv=5).fit(x, y)
        svm, chosen = search.best_estimator_, search.best_params_["C"]
    top1 = float((svm.predict(test_x.double().numpy()) == test_y.numpy()).mean())
    return {"test_top1": top1, "C": chosen if math.isfinite(chosen) else "inf"}
