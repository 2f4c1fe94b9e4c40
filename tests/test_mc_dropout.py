"""Monte Carlo dropout (Bayesian SegNet): predictive uncertainty and sampling."""

import math

import pytest
import torch
from torch import nn

from segzoo import SegNetBasic
from segzoo.inference.mc_dropout import mc_predict, predictive_uncertainty
from support.random_batch_norms import randomise_batch_norms


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
