"""The FAST tokenizer: DCT, scale and round, BPE (pi0-FAST)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embodia.cerebellum.fast_tokenizer import FastTokenizer, _replace_pair, dct_matrix

H, D = 16, 4


def smooth(n: int, seed: int = 0) -> np.ndarray:
    """Slow sinusoids in [-1, 1]: what normalized demonstration chunks look like."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, H)[None, :, None]
    amp, freq, phase = rng.uniform(-0.8, 0.8, (n, 1, D)), rng.uniform(0.2, 1.2, (n, 1, D)), rng.uniform(0, 6, (n, 1, D))
    return np.clip(amp * np.sin(2 * np.pi * freq * t + phase), -1, 1)


@pytest.fixture(scope="module")
def fitted() -> FastTokenizer:
    return FastTokenizer(H, D, scale=10.0, vocab_size=256).fit(smooth(400))


def test_dct_is_orthonormal_and_matches_scipy() -> None:
    c = dct_matrix(H)
    assert np.allclose(c @ c.T, np.eye(H))
    fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(1).normal(size=(H, D))
    assert np.allclose(c @ x, fft.dct(x, type=2, norm="ortho", axis=0))


def test_round_trip_within_the_rounding_bound(fitted: FastTokenizer) -> None:
    x = smooth(32, seed=7)
    y = fitted.decode(fitted.encode(x))
    # each coefficient is off by <= 0.5 / scale: per dimension an L2 error <= 0.5 * sqrt(H) / scale
    per_dim = np.sqrt(((y - x) ** 2).sum(1))
    assert per_dim.max() <= 0.5 * math.sqrt(H) / fitted.scale + 1e-9
    assert np.abs(y - x).max() < 0.1


def test_bpe_is_lossless_on_the_integers(fitted: FastTokenizer) -> None:
    x = smooth(16, seed=3)
    assert np.allclose(fitted.decode(fitted.encode(x)), fitted.from_coefficients(fitted.coefficients(x)))


def test_compresses_smooth_chunks_below_bins(fitted: FastTokenizer) -> None:
    lengths = [len(t) for t in fitted.encode(smooth(32, seed=9))]
    assert max(lengths) < H * D  # bins would use H * D tokens per chunk
    assert np.mean(lengths) < 0.5 * H * D
    assert len(fitted.merges) > 0 and fitted.n_tokens <= fitted.vocab_size


def test_garbage_sequences_decode_to_chunks(fitted: FastTokenizer) -> None:
    rng = np.random.default_rng(0)
    garbage = [[], [-5, 10**9, 3], list(rng.integers(0, fitted.n_tokens, 10 * H * D)), [fitted.n_tokens + 1] * 3,
               np.array([[1, 2], [3, 4]])]
    y = fitted.decode(garbage)
    assert y.shape == (len(garbage), H, D) and np.isfinite(y).all()
    assert np.allclose(y[0], 0.0) and np.allclose(y[3], 0.0)


def test_state_is_json_and_rebuilds_the_same_tokenizer(fitted: FastTokenizer) -> None:
    again = FastTokenizer.from_dict(json.loads(json.dumps(fitted.to_dict())))
    x = smooth(8, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(fitted.encode(x), again.encode(x), strict=True))


def test_runs_merge_left_to_right() -> None:
    seq = np.array([0, 0, 0, -1, 0, 0, 0, 0, 1])
    assert _replace_pair(seq, 0, 0, 9).tolist() == [9, 0, -1, 9, 9, 1]
    assert _replace_pair(seq, 0, 1, 7).tolist() == [0, 0, 0, -1, 0, 0, 0, 7]


def test_values_outside_the_range_are_clipped_not_refused(fitted: FastTokenizer) -> None:
    x = smooth(2) * 50.0
    assert np.isfinite(fitted.decode(fitted.encode(x))).all()
    with pytest.raises(ValueError, match="NaN"):
        fitted.encode(np.full((1, H, D), np.nan))
    with pytest.raises(ValueError, match="chunks must be"):
        fitted.encode(np.zeros((1, H + 1, D)))
