import copy

import pytest
import torch
from torch import nn

from selfsup.models.norm import BATCHNORM_POLICIES, SplitBatchNorm1d, SplitBatchNorm2d, apply_batchnorm_policy

C, S, N = 3, 4, 8


def _pair(momentum=0.1, affine=True):
    """A SplitBatchNorm2d with random affine/running state and S fresh BatchNorm2d copies."""
    split = SplitBatchNorm2d(C, S, momentum=momentum, affine=affine).double()
    with torch.no_grad():
        if affine:
            split.weight.uniform_(0.5, 1.5)
            split.bias.normal_()
        split.running_mean.normal_()
        split.running_var.uniform_(0.5, 2.0)
    plain = nn.BatchNorm2d(C, momentum=momentum, affine=affine).double()
    plain.load_state_dict(split.state_dict())
    refs = [copy.deepcopy(plain) for _ in range(S)]
    return split, refs


def _reference(refs, x):
    return torch.cat([bn(chunk) for bn, chunk in zip(refs, x.chunk(S))])


@pytest.mark.parametrize("channels_last", [False, True])
def test_split_forward_and_backward_match_independent_batchnorms(channels_last):
    split, refs = _pair()
    x = torch.randn(N, C, 5, 6, dtype=torch.float64) * 3 + 1
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = split(x1), _reference(refs, x2)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(ref)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(split.weight.grad, sum(bn.weight.grad for bn in refs))
    torch.testing.assert_close(split.bias.grad, sum(bn.bias.grad for bn in refs))


@pytest.mark.parametrize("channels_last", [False, True])
def test_an_inplace_relu_after_split_and_a_gradient_in_the_other_layout_match_the_reference(channels_last):
    """The output is a tensor of its own (not a view), so in-place ops after it are plain, and
    the backward accepts an incoming gradient of either memory layout."""
    split, refs = _pair()
    x = torch.randn(N, C, 4, 5, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(N, C, 4, 5, dtype=torch.float64)  # contiguous, whatever the input's layout
    for after in (torch.relu_, lambda out: out):  # an in-place op after it; the gradient arriving as g
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, ref = after(split(x1)), after(_reference(refs, x2).clone())
        torch.testing.assert_close(out, ref)
        out.backward(g)
        ref.backward(g)
        torch.testing.assert_close(x1.grad, x2.grad)
        assert x1.grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_split_under_bf16_autocast_keeps_bf16_activations_and_float32_statistics():
    split, refs = _pair()
    split, refs = split.float(), [bn.float() for bn in refs]
    x = (torch.randn(N, C, 4, 4) * 3 + 2).to(memory_format=torch.channels_last)
    x1 = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = split(x1)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    ref = _reference(refs, x1.detach().float())  # the same bf16 inputs, normalised in float32
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(split.running_mean, torch.stack([b.running_mean for b in refs]).mean(0))
    out.float().pow(2).sum().backward()
    assert x1.grad.dtype == torch.bfloat16 and split.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_are_mean_of_group_statistics(momentum):
    split, refs = _pair(momentum=momentum)
    for _ in range(3):
        x = torch.randn(N, C, 4, 4, dtype=torch.float64) * 2 - 1
        split(x)
        _reference(refs, x)
    torch.testing.assert_close(split.running_mean, torch.stack([b.running_mean for b in refs]).mean(0))
    torch.testing.assert_close(split.running_var, torch.stack([b.running_var for b in refs]).mean(0))
    assert split.num_batches_tracked.item() == refs[0].num_batches_tracked.item() == 3


def test_affine_free_split_matches_reference():
    split, refs = _pair(affine=False)
    x = torch.randn(N, C, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(split(x), _reference(refs, x))


def test_eval_mode_and_state_dict_match_batchnorm2d():
    split, _ = _pair()
    split(torch.randn(N, C, 4, 4, dtype=torch.float64))
    plain = nn.BatchNorm2d(C).double()
    assert {k: v.shape for k, v in split.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(split.state_dict())
    split.eval(), plain.eval()
    x = torch.randn(5, C, 4, 4, dtype=torch.float64)  # any batch size in eval
    torch.testing.assert_close(split(x), plain(x))

    other = nn.BatchNorm2d(C).double()
    with torch.no_grad():
        other.running_mean.fill_(0.5)
        other.weight.fill_(2.0)
    split.load_state_dict(other.state_dict())
    other.eval()
    torch.testing.assert_close(split(x), other(x))


def test_indivisible_batch_raises():
    split = SplitBatchNorm2d(C, S)
    with pytest.raises(ValueError, match="divisible"):
        split(torch.randn(N + 1, C, 2, 2))


def _small_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, momentum=0.3)),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6))


@pytest.mark.parametrize("shape", [(N, C), (N, C, 5)])
def test_split_batchnorm1d_matches_independent_batchnorms(shape):
    split = SplitBatchNorm1d(C, S, momentum=0.2).double()
    refs = [nn.BatchNorm1d(C, momentum=0.2).double() for _ in range(S)]
    x = torch.randn(*shape, dtype=torch.float64) * 2 + 1
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = split(x1), _reference(refs, x2)
    torch.testing.assert_close(out, ref)
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(split.running_var, torch.stack([b.running_var for b in refs]).mean(0))
    assert split.state_dict().keys() == refs[0].state_dict().keys()


def test_split_policy_converts_every_batchnorm_and_keeps_state():
    net = _small_cnn()
    with torch.no_grad():
        net[1].weight.uniform_()
        net[1].running_mean.normal_()
        net[1].num_batches_tracked.fill_(7)
    before = copy.deepcopy(net.state_dict())
    out = apply_batchnorm_policy(net, "split", splits=2)
    assert out is net
    assert isinstance(net[1], SplitBatchNorm2d) and net[1].num_splits == 2
    assert isinstance(net[3][1], SplitBatchNorm2d) and net[3][1].momentum == 0.3
    assert isinstance(net[7], SplitBatchNorm1d) and net[7].num_splits == 2
    assert sum(isinstance(m, (SplitBatchNorm1d, SplitBatchNorm2d)) for m in net.modules()) == 3
    after = net.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert net(torch.randn(4, 3, 6, 6)).shape == (4, 6)


@pytest.mark.parametrize("policy", ["sync", "local"])
def test_sync_and_local_policies_leave_module_unchanged(policy):
    net = _small_cnn()
    types = [type(m) for m in net.modules()]
    assert apply_batchnorm_policy(net, policy) is net
    assert [type(m) for m in net.modules()] == types


def test_unknown_policy_raises():
    assert BATCHNORM_POLICIES == ("sync", "local", "split")
    with pytest.raises(ValueError, match="sync, local, split"):
        apply_batchnorm_policy(_small_cnn(), "bogus")
