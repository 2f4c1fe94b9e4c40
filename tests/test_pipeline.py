"""The prediction pipeline (inference/pipeline.py): working size, TTA, tiles and MC dropout composed."""

import pytest
import torch
import torch.nn.functional as F

import segzoo
from segzoo.inference.pipeline import InferenceOptions, infer


@pytest.fixture(scope="module")
def bayesian():
    torch.manual_seed(0)
    return segzoo.SegNetBasic(3, dropout="central").eval()


def test_default_is_one_softmax_pass(bayesian):
    x = torch.randn(2, 3, 21, 30)
    with torch.no_grad():
        expected = bayesian(x).softmax(1)
    result = infer(bayesian, x)
    assert torch.equal(result.probabilities, expected) and result.entropy is None
    assert torch.equal(result.labels, expected.argmax(1))


def test_another_output_size_upsamples_the_logits_as_scores_are_counted(bayesian):
    """One plain pass: the logits upsampled bilinearly to the output size, then the softmax (as
    evaluation counts them); with TTA the log-probabilities are, which gives the same labels."""
    x = torch.randn(1, 3, 20, 30)
    result = infer(bayesian, x, output_size=(40, 60))
    with torch.no_grad():
        logits = bayesian(x)
    expected = F.interpolate(logits, size=(40, 60), mode="bilinear", align_corners=False).softmax(1)
    torch.testing.assert_close(result.probabilities, expected, atol=1e-6, rtol=0)
    flipped = infer(bayesian, x, InferenceOptions(flip=True), output_size=(40, 60))
    with torch.no_grad():
        mean = (logits.softmax(1) + bayesian(x.flip(-1)).softmax(1).flip(-1)) / 2
    expected = F.interpolate(mean.log(), size=(40, 60), mode="bilinear", align_corners=False).softmax(1)
    torch.testing.assert_close(flipped.probabilities, expected, atol=1e-5, rtol=0)


def test_monte_carlo_matches_mc_predict(bayesian):
    x = torch.randn(1, 3, 24, 32)
    reference = segzoo.mc_predict(bayesian, x, samples=4, seed=7)
    result = infer(bayesian, x, InferenceOptions(mc_samples=4, seed=7))
    torch.testing.assert_close(result.probabilities, reference.probabilities, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.entropy, reference.entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.mutual_information, reference.mutual_information, atol=1e-5, rtol=0)


def test_monte_carlo_with_flips_keeps_the_mutual_information_decomposition(bayesian):
    """With flip TTA the prediction is the mean of the two MC means; MI = H(mean) - mean of the
    samples' entropies over both passes."""
    x = torch.randn(1, 3, 24, 32)
    plain = segzoo.mc_predict(bayesian, x, samples=3, seed=1)
    mirrored = segzoo.mc_predict(bayesian, x.flip(-1), samples=3, seed=1)
    mean = (plain.probabilities + mirrored.probabilities.flip(-1)) / 2
    expected_entropy = ((plain.entropy - plain.mutual_information) + (mirrored.entropy - mirrored.mutual_information).flip(-1)) / 2
    entropy = -torch.xlogy(mean, mean).sum(1)
    result = infer(bayesian, x, InferenceOptions(mc_samples=3, seed=1, flip=True))
    torch.testing.assert_close(result.probabilities, mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.entropy, entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.mutual_information, (entropy - expected_entropy).clamp(min=0), atol=1e-5, rtol=0)


def test_tiles_compose_with_tta(bayesian):
    """Tiles wide enough to cover each scaled image change nothing: TTA alone equals TTA + tiles."""
    x = torch.randn(1, 3, 20, 28)
    alone = infer(bayesian, x, InferenceOptions(flip=True, scales=(0.75, 1.0)))
    tiled = infer(bayesian, x, InferenceOptions(flip=True, scales=(0.75, 1.0), tile=(64, 64)))
    assert torch.equal(alone.probabilities, tiled.probabilities)
    smaller = infer(bayesian, x, InferenceOptions(flip=True, tile=(16, 16)))
    torch.testing.assert_close(smaller.probabilities.sum(1), torch.ones(1, 20, 28), atol=1e-5, rtol=0)


def test_modes_are_restored(bayesian):
    bayesian.train()
    try:
        infer(bayesian, torch.randn(1, 3, 16, 16), InferenceOptions(mc_samples=2))
        assert all(m.training for m in bayesian.modules())
    finally:
        bayesian.eval()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"flip": 1}, "flip"), ({"tile": (4,)}, "tile"), ({"overlap": -0.1}, "overlap"), ({"blend": "x"}, "blend"),
     ({"tile_batch": 0}, "tile_batch"), ({"mc_samples": 0}, "mc_samples"), ({"scales": ()}, "scales")],
)  # fmt: skip
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        InferenceOptions(**kwargs)
