"""Pretext tasks: the targets they make from the images themselves."""
import torch

from test_non_contrastive_methods import tiny


def test_rotation_puts_all_four_rotations_of_each_image_in_the_batch():
    method = tiny("rotation")
    seen = []
    method.backbone.forward = lambda x: seen.append(x) or torch.zeros(x.shape[0], method.feature_dim)
    view = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)
    method.training_step({"views": [view]}, 0)
    (rotated,) = seen
    assert rotated.shape == (8, 3, 4, 4)
    for quarter in range(4):  # block q holds every image turned by q quarter turns
        assert torch.equal(rotated[2 * quarter:2 * quarter + 2], torch.rot90(view, quarter, dims=(2, 3)))
    assert torch.equal(torch.rot90(rotated[2:4], -1, dims=(2, 3)), view)


def test_rotation_head_learns_the_rotation_of_real_images():
    method = tiny("rotation")
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    from selfsup.data.datasets import load_split
    images = load_split("synthetic", "train", options={"synthetic_size": 64}).images.float() / 255
    for step in range(30):
        out = method.training_step({"views": [images]}, step)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert out["accuracy"] > 0.6  # chance: 0.25
