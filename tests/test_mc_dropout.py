"""Monte Carlo dropout (Bayesian SegNet): predictive uncertainty (also under hostile input, with
hypothesis) and sampling."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support.properties import CASES, assert_accepted, assert_rejected, assert_works_or_clear_error
from support.random_batch_norms import randomise_batch_norms
from torch import nn

from segzoo import SegNetBasic
from segzoo.inference.mc_dropout import mc_predict, predictive_uncertainty


def test_hand_worked_two_class_example():
    # one pixel, two samples: p1 = (0.9, 0.1), p2 = (0.1, 0.9) -> mean (0.5, 0.5)
    samples = torch.tensor([[0.9, 0.1], [0.1, 0.9]], dtype=torch.float64).view(2, 1, 2, 1, 1)
    result = predictive_uncertainty(samples)
    sample_entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.3250829733914482 nats
    torch.testing.assert_close(result.probabilities.flatten(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert result.entropy.item() == pytest.approx(math.log(2), abs=1e-15)
    assert result.mutual_information.item() == pytest.approx(math.log(2) - sample_entropy, abs=1e-15)  # 0.3680642
    # variance of (0.9, 0.1) about 0.5: ((0.4)^2 + (0.4)^2) / 2 = 0.16 for each class
    torch.testing.assert_close(result.variance.flatten(), torch.tensor([0.16, 0.16], dtype=torch.float64))
    # agreeing samples: no epistemic part, and entropy = the samples' own entropy
    agreeing = predictive_uncertainty(samples[:1].repeat(2, 1, 1, 1, 1))
    assert agreeing.mutual_information.item() == pytest.approx(0.0, abs=1e-15)
    assert agreeing.entropy.item() == pytest.approx(sample_entropy, abs=1e-15)
    assert agreeing.variance.abs().max().item() == pytest.approx(0.0, abs=1e-15)


def test_predictive_uncertainty_refuses_non_probabilities():
    with pytest.raises(ValueError, match="summing to 1"):
        predictive_uncertainty(torch.rand(2, 1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(T, N, C, H, W\)"):
        predictive_uncertainty(torch.rand(3, 4, 4))


@pytest.fixture(scope="module")
def bayesian():
    torch.manual_seed(0)
    # non-trivial running statistics, so BN in train mode would visibly change them and the outputs
    return randomise_batch_norms(SegNetBasic(4, dropout="central"))


def test_mc_outputs_are_distributions_with_bounded_uncertainty(bayesian):
    images = torch.randn(2, 3, 21, 27)
    result = mc_predict(bayesian, images, samples=6, seed=0)
    assert result.probabilities.shape == (2, 4, 21, 27) and result.samples == 6
    assert (result.probabilities >= 0).all()
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(2, 21, 27))
    assert result.entropy.shape == result.mutual_information.shape == (2, 21, 27)
    assert (result.mutual_information >= 0).all() and (result.mutual_information <= result.entropy + 1e-6).all()
    assert result.entropy.max() <= math.log(4) + 1e-6
    assert result.mutual_information.max() > 0  # dropout did sample different outputs
    assert (result.variance >= 0).all() and result.variance.max() <= 0.25
    assert torch.equal(result.labels, result.probabilities.argmax(1))


def test_mc_equals_mean_of_separate_passes_with_bn_in_eval(bayesian):
    """Batched sampling equals T separate forwards with dropout on and BN in eval mode."""
    images = torch.randn(1, 3, 16, 20)
    result = mc_predict(bayesian, images, samples=4, seed=3, batch_size=1)
    torch.manual_seed(3)
    bayesian.eval()
    for module in bayesian.modules():
        if isinstance(module, nn.Dropout):
            module.train()
    with torch.no_grad():
        expected = torch.stack([bayesian(images).softmax(1) for _ in range(4)]).mean(0)
    bayesian.eval()
    torch.testing.assert_close(result.probabilities, expected, rtol=1e-6, atol=1e-6)


def test_mc_leaves_bn_statistics_modes_and_global_rng_untouched(bayesian):
    before = {k: v.clone() for k, v in bayesian.state_dict().items()}
    images = torch.randn(2, 3, 16, 16)
    bayesian.train()
    rng = torch.get_rng_state()
    mc_predict(bayesian, images, samples=3, seed=1)
    assert all(m.training for m in bayesian.modules())  # modes restored
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in bayesian.state_dict().items():
        assert torch.equal(value, before[key]), key
    bayesian.eval()


def test_mc_is_reproducible_with_a_seed(bayesian):
    images = torch.randn(2, 3, 16, 16)
    first = mc_predict(bayesian, images, samples=5, seed=7)
    again = mc_predict(bayesian, images, samples=5, seed=7)
    other = mc_predict(bayesian, images, samples=5, seed=8)
    assert torch.equal(first.probabilities, again.probabilities)
    assert torch.equal(first.mutual_information, again.mutual_information)
    assert not torch.equal(first.probabilities, other.probabilities)


def test_mc_accepts_uint8_images_like_predict(bayesian):
    image = torch.randint(0, 256, (3, 18, 22), dtype=torch.uint8)
    result = mc_predict(bayesian, image, samples=2, seed=0)
    assert result.probabilities.shape == (1, 4, 18, 22) and result.probabilities.dtype == torch.float32


def test_mc_needs_dropout_and_positive_samples():
    with pytest.raises(ValueError, match="no dropout layers"):
        mc_predict(SegNetBasic(3), torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="positive integer"):
        mc_predict(SegNetBasic(3, dropout="central"), torch.randn(1, 3, 16, 16), samples=0)


# ---- property tests ----

@st.composite
def softmax_samples(draw):
    """Dirichlet-like samples (T, N, C, H, W): softmax of random logits at a random temperature, one-hot
    at the extreme, uniform at temperature 0."""
    t, n, c = draw(st.integers(1, 4)), draw(st.integers(0, 2)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    temperature = draw(st.sampled_from([0.0, 0.5, 2.0, 20.0, 1e4]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    logits = torch.randn(t, n, c, h, w, generator=generator, dtype=torch.float64)
    return (temperature * logits).softmax(2).to(draw(st.sampled_from([torch.float32, torch.float64])))


@settings(max_examples=50, **CASES)
@given(samples=softmax_samples())
def test_predictive_uncertainty_is_a_distribution_with_0_le_mi_le_entropy_le_log_c(samples):
    result = predictive_uncertainty(samples)
    c = samples.shape[2]
    slack = 1e-5 if samples.dtype == torch.float32 else 1e-12
    mean = samples.double().mean(0)
    torch.testing.assert_close(result.probabilities.double(), mean, rtol=0, atol=slack)
    torch.testing.assert_close(result.probabilities.double().sum(1), torch.ones_like(mean[:, 0]), rtol=0, atol=slack)
    entropy = -(mean * torch.where(mean > 0, mean, 1.0).log()).sum(1)  # 0 log 0 = 0
    torch.testing.assert_close(result.entropy.double(), entropy, rtol=0, atol=slack)
    mi, h = result.mutual_information.double(), result.entropy.double()
    assert (mi >= 0).all() and (mi <= h + slack).all() and (h <= math.log(c) + slack).all()
    assert (result.variance >= 0).all() and result.samples == samples.shape[0]
    assert torch.equal(result.labels, result.probabilities.argmax(1))


@settings(max_examples=30, **CASES)
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=6, min_side=0, max_side=3),
    fill=st.sampled_from([-0.5, 0.7, math.nan, 2.0]),
    kind=st.sampled_from(["float", "int", "array"]),
)
def test_predictive_uncertainty_refuses_what_is_not_softmax_samples(shape, fill, kind):
    values = torch.full(shape, fill)
    samples = {"float": values, "int": values.to(torch.int64) if math.isfinite(fill) else values, "array": values.numpy()}[kind]
    result = assert_works_or_clear_error(lambda: predictive_uncertainty(samples))
    if kind == "array":
        assert_rejected(result, TypeError, "torch.Tensor")
    elif len(shape) != 5 or not samples.is_floating_point():
        assert_rejected(result, ValueError, "(T, N, C, H, W)")
    elif shape[0] == 0:
        assert_rejected(result, ValueError, "at least one sample")
    elif math.prod(shape[:2]) * math.prod(shape[3:]) > 0:
        assert_rejected(result, ValueError, "must be probabilities")  # no fill sums to 1 over C, nor do 0 classes
    else:
        assert_accepted(result)  # no pixel to check
