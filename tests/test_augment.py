import math

import pytest
import torch

from selfsup.data.augment import (AugmentConfig, augment_batch, color_jitter, gaussian_blur, grayscale,
                                  random_resized_crop, shift_hue)
from selfsup.data.views import Normalization, ViewSpec, make_views
from selfsup.errors import SelfSupError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_full_crop_without_flip_is_identity():
    x = torch.rand(4, 3, 16, 16)
    out = random_resized_crop(x, 16, (1.0, 1.0), (1.0, 1.0), 0.0, gen())
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_probability_one_mirrors():
    x = torch.rand(2, 1, 8, 8)
    out = random_resized_crop(x, 8, (1.0, 1.0), (1.0, 1.0), 1.0, gen())
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_crop_of_a_quarter_area_zooms_in():
    # a crop of area 1/4 with ratio 1 covers half of each side: resized back, each source
    # pixel is doubled, so the output's range of x coordinates spans half the image.
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(3, 1, 32, 32).contiguous()
    out = random_resized_crop(ramp, 32, (0.25, 0.25), (1.0, 1.0), 0.0, gen())
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    assert torch.allclose(span, torch.full_like(span, 0.5), atol=0.05)


def test_hue_shift_of_a_third_turns_red_green_and_a_full_turn_is_identity():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(shift_hue(red, torch.tensor([1 / 3])), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1), atol=1e-5)
    x = torch.rand(5, 3, 4, 4)
    assert torch.allclose(shift_hue(x, torch.zeros(5)), x, atol=1e-5)
    assert torch.allclose(shift_hue(x, torch.ones(5)), x, atol=1e-5)


def test_grayscale_uses_the_itu_r_601_luma_weights():
    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    assert grayscale(x).item() == pytest.approx(0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6)


def test_color_jitter_probability_zero_is_identity_and_one_changes():
    x = torch.rand(8, 3, 8, 8)
    assert torch.allclose(color_jitter(x, 0.5, 0.0, gen()), x, atol=1e-5)
    assert not torch.allclose(color_jitter(x, 0.5, 1.0, gen()), x, atol=1e-3)


def test_brightness_scales_and_contrast_pivots_on_each_images_mean_grey():
    # SimCLR's jitter (torchvision's): brightness multiplies, contrast blends with the image's mean
    # grey; on grey images the two are all there is, so out = b · (m + c · (x − m)) per image
    x = torch.rand(512, 1, 8, 8) * 0.2 + 0.4  # no clamping at 0 or 1 for factors in [0.76, 1.24]
    out = color_jitter(x, 0.3, 1.0, gen())
    mean = x.mean((1, 2, 3), keepdim=True)
    b = out.mean((1, 2, 3), keepdim=True) / mean
    c = ((out / b - mean) * (x - mean)).sum((1, 2, 3), keepdim=True) / (x - mean).square().sum((1, 2, 3), keepdim=True)
    assert torch.allclose(out, b * (mean + c * (x - mean)), atol=1e-5)
    for factor in (b, c):  # each drawn uniformly in 1 ± 0.8 · strength
        assert 0.76 - 1e-4 <= factor.min() < 0.78 and 1.22 < factor.max() <= 1.24 + 1e-4


def saturation_factors(x, out):
    """The per-image factor f of a pure saturation change: out = grey + f · (x - grey)."""
    grey = grayscale(x)
    return ((out - grey) * (x - grey)).sum((1, 2, 3)) / (x - grey).square().sum((1, 2, 3))


def test_saturation_and_hue_spreads_replace_the_strengths_share_and_draw_the_same_numbers():
    # BYOL's jitter: saturation 0.2 where strength 0.5 alone gives 0.4; strength 0 isolates saturation (and hue 0)
    x = torch.rand(512, 3, 8, 8) * 0.5 + 0.25  # no clamping at 0 or 1
    byol = saturation_factors(x, color_jitter(x, 0.0, 1.0, gen(), saturation=0.2, hue=0.0))
    assert 0.8 - 1e-4 <= byol.min() < 0.82 and 1.18 < byol.max() <= 1.2 + 1e-4
    wider = saturation_factors(x, color_jitter(x, 0.0, 1.0, gen(), saturation=0.4, hue=0.0))
    assert wider.min() < 0.62 and wider.max() > 1.38
    unset = saturation_factors(x, color_jitter(x, 0.0, 1.0, gen(), hue=0.0))  # 0.8 x strength 0: no change
    assert torch.allclose(unset, torch.ones_like(unset), atol=1e-4)
    states = []
    for changes in ({}, {"saturation": 0.2}, {"hue": 0.4}):
        g = gen()
        color_jitter(x, 0.5, 0.8, g, **changes)
        states.append(g.get_state())
    assert all(torch.equal(states[0], state) for state in states)  # same stream: grey images see no change at all


@pytest.mark.parametrize("changes, message", [({"hue": 0.7}, "hue must be in [0, 0.5]"),
                                               ({"blur_p": 1.5}, "blur_p must be in [0, 1]"),
                                               ({"crop_scale": (0.5, 0.2)}, "crop_scale must be two numbers")])
def test_view_settings_out_of_range_are_one_clear_error(changes, message):
    with pytest.raises(SelfSupError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AugmentConfig(**changes)


def test_views_are_made_in_float32_under_bf16_autocast():
    """The engine makes views inside the training step, under autocast when training in
    bf16-mixed: the crops' sampling grid and the blur must still be computed in float32."""
    from selfsup.data.lab import rgb_to_lab

    images = (torch.rand(4, 3, 64, 64, generator=gen(1)) * 255).to(torch.uint8)
    norm, specs = Normalization((0.5,) * 3, (0.25,) * 3), [ViewSpec(AugmentConfig(blur_p=1.0), count=2)]
    plain = make_views(images, specs, norm, gen())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = make_views(images, specs, norm, gen())
        lab = rgb_to_lab(images.float() / 255)
    assert all(v.dtype == torch.float32 for v in under) and all(torch.equal(a, b) for a, b in zip(plain, under))
    assert lab.dtype == torch.float32 and torch.equal(lab, rgb_to_lab(images.float() / 255))


def test_blur_keeps_constant_images_and_smooths_noise():
    flat = torch.full((2, 3, 20, 20), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.0, (1.0, 2.0), gen()), flat, atol=1e-5)
    noise = torch.rand(2, 1, 20, 20)
    assert gaussian_blur(noise, 1.0, (1.5, 2.0), gen()).std() < 0.6 * noise.std()
    assert torch.allclose(gaussian_blur(noise, 0.0, (1.5, 2.0), gen()), noise, atol=1e-5)
    # SimCLR's blur: a kernel 10% of the side (7 taps on 64 px), σ as drawn, reflected edges: torchvision's
    from torchvision.transforms.v2.functional import gaussian_blur as reference

    image = torch.rand(2, 3, 64, 64)
    for sigma in (0.5, 1.7):
        assert torch.allclose(gaussian_blur(image, 1.0, (sigma, sigma), gen()), reference(image, [7, 7], [sigma, sigma]),
                              atol=1e-5)


def test_views_are_reproducible_and_differ_between_views():
    images = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    specs = [ViewSpec(AugmentConfig(), count=2)]
    norm = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    first = make_views(images, specs, norm, gen(3))
    again = make_views(images, specs, norm, gen(3))
    assert len(first) == 2 and first[0].shape == (6, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.allclose(first[0], first[1])


def test_augmented_values_stay_in_range_for_any_channel_count():
    for channels in (1, 3, 4):
        x = torch.rand(4, channels, 12, 12)
        out = augment_batch(x, AugmentConfig(jitter_strength=1.0, blur_min_size=8, solarize_p=0.5), 10, gen())
        assert out.shape == (4, channels, 10, 10)
        assert out.min() >= 0 and out.max() <= 1 + 1e-6
        assert not math.isnan(out.sum().item())
