"""Bayesian SegNet: dropout placement presets and Monte Carlo dropout uncertainty."""

import math

import pytest
import torch
from torch import nn

from segzoo import SegNet, SegNetBasic
from segzoo.models.segnet import DROPOUT_PLACEMENTS, dropout_stages
from segzoo.inference.mc_dropout import mc_predict, predictive_uncertainty
from support.random_batch_norms import randomise_batch_norms


def _dropout_sites(model) -> tuple[list[int], list[int]]:
    """Encoder stages and mirrored encoder stages (for decoder sites) that are followed by dropout."""
    n = len(model.encoder.stages)
    encoder = [i for i, m in enumerate(model.encoder_dropout) if isinstance(m, nn.Dropout)]
    decoder = sorted(n - 1 - d for d, m in enumerate(model.decoder_dropout) if isinstance(m, nn.Dropout))
    return encoder, decoder


def test_bayesian_segnet_basic_drops_after_pool3_pool4_and_decoders_4_3():
    model = SegNetBasic(11, dropout="central")
    # 0-based encoder stages 2, 3 are pool3, pool4; the decoder sites mirror them (decoders 4 and 3)
    assert _dropout_sites(model) == ([2, 3], [2, 3])
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5] * 4
    # decoders 4 and 3 are the first two decoder stages to run
    assert [isinstance(m, nn.Dropout) for m in model.decoder_dropout] == [True, True, False, False]


def test_bayesian_segnet_drops_in_the_central_six_stages():
    model = SegNet(11, dropout="central", dropout_rate=0.3)
    assert _dropout_sites(model) == ([2, 3, 4], [2, 3, 4])
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.3}


@pytest.mark.parametrize("placement", DROPOUT_PLACEMENTS)
def test_every_placement_builds_runs_and_is_in_the_config(placement):
    model = SegNetBasic(3, dropout=placement)
    encoder, decoder = dropout_stages(placement, 4)
    assert _dropout_sites(model) == (sorted(encoder), sorted(decoder))
    assert model.config["dropout"] == placement
    assert model(torch.randn(2, 3, 19, 23)).shape == (2, 3, 19, 23)


def test_default_has_no_dropout_and_checkpoints_are_interchangeable():
    plain, bayesian = SegNetBasic(3), SegNetBasic(3, dropout="central")
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    bayesian.load_state_dict(plain.state_dict())  # strict: same keys, dropout has no weights
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), bayesian.eval()(x), rtol=0, atol=0)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = SegNetBasic(3, dropout="central")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))


def test_bad_placement_and_rate_are_refused():
    with pytest.raises(ValueError, match="dropout must be one of"):
        SegNetBasic(3, dropout="middle")
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\)"):
        SegNet(3, dropout="central", dropout_rate=1.0)


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
