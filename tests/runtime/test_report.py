"""The HTML report reads as the run went: links from its own folder, outcomes as the monitor
judged them, lockstep latency marked simulated, rates without e-notation."""

from __future__ import annotations

import re

import numpy as np

from embodia.runtime.agent import step_outcome, verdict
from embodia.runtime.report import _fmt, write_report


def _run(mode: str = "lockstep", **kw) -> dict:
    step = {"step_id": 1, "skill": "pick", "args": ["red_cube"], "instruction": "pick up the red cube",
            "success": False, "reason": "timeout", "t_start": 0.0, "t_end": 6.0, "duration_s": 6.0,
            "chunks": 60, "skipped_actions": 0, "inference_latency_ms_p50": 0.0, "interventions": {},
            "effects_ok": True, "next": "next", "why": "effects seen",
            "outcome": step_outcome("timeout", True)}
    layers = [{"name": "control", "rate_hz": 1000.0, "band_hz": [100.0, 1000.0], "does": "control"}]
    timing = {"control": {"name": "control", "target_hz": 1000.0, "achieved_hz": 999.7}}
    return {"instruction": "pick up the red cube", "seed": 4, "embodiment": "arm7", "policy": "expert",
            "mode": mode, "success": True, "sim_s": 6.0, "wall_s": 2.0, "retries": 0, "replans": 0,
            "scene_before": "", "scene_after": "", "steps": [step], "layers": layers, "timing": timing,
            "interventions": {}, "notices": [], "video": None, "report": None} | kw


def test_numbers_read_without_e_notation():
    assert _fmt(1000.0) == "1000" and _fmt([100.0, 1000.0]) == "100, 1000"
    assert _fmt(999.7) == "999.7" and _fmt(0.065) == "0.065" and _fmt(2.5) == "2.5"


def test_a_step_whose_effects_held_at_the_timeout_does_not_read_timeout():
    assert step_outcome("timeout", True) == "effects held (timeout)"
    assert step_outcome("success", True) == "success"
    assert step_outcome("timeout", False) == "failed (timeout)"
    assert step_outcome("estop", None) == "estop"


def test_the_report_shows_outcome_simulated_latency_and_integer_bands(tmp_path):
    page = write_report(tmp_path / "r.html", _run(), {}, [], {}).read_text()
    assert "<td>effects held (timeout)</td>" in page and "<td>timeout</td>" not in page
    assert "inference_latency_ms_p50 (simulated)" in page
    assert "e+0" not in page and "<td>100, 1000</td>" in page and "<td>1000</td>" in page
    page = write_report(tmp_path / "r.html", _run("realtime"), {}, [], {}).read_text()
    assert "(simulated)" not in page


def test_the_video_link_is_relative_to_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out/demo").mkdir(parents=True)
    (tmp_path / "out/demo/run.mp4").write_bytes(np.zeros(100, np.uint8).tobytes())
    page = write_report("out/demo/report.html", _run(video="out/demo/run.mp4"), {}, [], {}).read_text()
    assert re.findall(r'<a href="([^"]+)"', page) == ["run.mp4"]


def test_the_verdict_names_a_fallback():
    assert verdict(True, None) == "SUCCESS" and verdict(False, None) == "FAILED"
    assert verdict(True, "ckpt") == "SUCCESS (scripted expert fallback, not ckpt)"
