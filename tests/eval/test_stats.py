import pytest

from embodia.eval.stats import summarize, wilson_interval


def test_wilson_known_values():
    lo, hi = wilson_interval(95, 100)
    assert lo == pytest.approx(0.8882, abs=1e-3) and hi == pytest.approx(0.9785, abs=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-3)


def test_wilson_rejects_nonsense():
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_summarize():
    s = summarize([True, False, True, True], [10, 20, 30, 40])
    assert s["success_rate"] == 0.75 and s["mean_episode_length"] == 25
