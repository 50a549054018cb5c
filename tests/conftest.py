import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TINY = ["--dataset", "synthetic", "--batch-size", "64", "--width", "8", "--set", "trainer.progress_bar=false",
        "--set", "optimizer.name=adam", "--set", "optimizer.lr=0.008", "--set", "optimizer.lr_scaling=none",
        "--set", "schedule.warmup_epochs=0",
        "--set", "knn.k=20"]


@pytest.fixture
def tiny_args():
    """Options for a seconds-long SimCLR run on the synthetic dataset."""
    return list(TINY)
