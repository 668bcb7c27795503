import math

import numpy as np
import pytest

from ml_audio_encoder.eval import analysis


def test_uniform_codes_have_full_efficiency():
    k = 16
    codes = np.stack([np.tile(np.arange(k), 5), np.roll(np.tile(np.arange(k), 5), 3)])  # every code equally often
    s = analysis.codebook_stats(codes, k)
    np.testing.assert_allclose(s.entropy_bits, [4.0, 4.0])
    np.testing.assert_allclose(s.normalized_entropy, [1.0, 1.0])
    np.testing.assert_allclose(s.perplexity, [16.0, 16.0])
    np.testing.assert_allclose(s.utilization, [1.0, 1.0])
    assert s.dead_codes.tolist() == [0, 0]
    assert s.efficiency == pytest.approx(1.0)
    assert s.n_frames == 5 * k


def test_constant_codes_have_perplexity_one():
    s = analysis.codebook_stats(np.full((3, 50), 7), 32)
    np.testing.assert_allclose(s.entropy_bits, 0.0)
    np.testing.assert_allclose(s.perplexity, 1.0)
    np.testing.assert_allclose(s.utilization, 1 / 32)
    assert s.dead_codes.tolist() == [31, 31, 31]
    assert s.efficiency == 0.0


def test_hand_counted_entropy_and_dac_efficiency():
    # level 1: {0, 0, 1, 1} -> 1 bit; level 2: {0, 1, 2, 3} -> 2 bits; K = 4 -> 2 bits per code
    codes = np.array([[0, 0, 1, 1], [0, 1, 2, 3]])
    s = analysis.codebook_stats(codes, 4)
    np.testing.assert_allclose(s.entropy_bits, [1.0, 2.0])
    np.testing.assert_allclose(s.normalized_entropy, [0.5, 1.0])
    assert s.efficiency == pytest.approx(3.0 / (2 * 2))  # sum of entropies / (n_q * log2 K), as compute_entropy
    assert analysis.bitrate_efficiency(codes, 4) == pytest.approx(0.75)
    assert s.entropy_kbps(frame_rate=100) == pytest.approx(0.3)


def test_batched_and_listed_codes_concatenate_over_time():
    a = np.array([[0, 1], [2, 3]])
    b = np.array([[[1, 1], [3, 3]]])  # (batch=1, n_q=2, frames=2)
    counts = analysis.code_counts([a, b], 4)
    assert counts.tolist() == [[1, 3, 0, 0], [0, 0, 1, 3]]
    with pytest.raises(ValueError):
        analysis.code_counts(np.array([[0, 4]]), 4)


def test_markdown_and_plots(tmp_path):
    rng = np.random.default_rng(0)
    s = analysis.codebook_stats(rng.integers(0, 8, size=(3, 200)), 8)
    md = s.to_markdown()
    assert "perplexity" in md and md.count("\n|") >= 4
    analysis.plot_code_usage(s, tmp_path / "usage.png")
    analysis.plot_perplexity(s, tmp_path / "ppl.png")
    analysis.plot_mel_vs_levels([{"n_quantizers": 1, "mel_distance": 2.0}, {"n_quantizers": 2, "mel_distance": 1.5}],
                                tmp_path / "mel.png")  # fmt: skip
    for name in ("usage.png", "ppl.png", "mel.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_mel_distance_vs_levels_with_tiny_model(tiny_model):
    from conftest import sweep

    x = sweep(0.5, tiny_model.sample_rate)
    res = analysis.mel_distance_vs_levels(tiny_model, x, tiny_model.sample_rate)
    assert [r["n_quantizers"] for r in res] == list(range(1, tiny_model.n_codebooks + 1))
    assert all(math.isfinite(r["mel_distance"]) and r["mel_distance"] >= 0 for r in res)
    kbps = [r["kbps"] for r in res]
    assert kbps == sorted(kbps) and kbps[0] == pytest.approx(tiny_model.bitrate(1) / 1000)
    codes = analysis.encode_codes(tiny_model, x, tiny_model.sample_rate)
    assert codes.shape == (tiny_model.n_codebooks, math.ceil(len(x) / tiny_model.hop_length))
