"""A bad checkpoint is refused with one CheckpointError naming the file and the field, and
the CLI turns it into one line and exit code 2 (no traceback, no hang on /dev/zero)."""

import json
import math
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from embodia.cerebellum.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from embodia.cerebellum.config import PolicyConfig
from embodia.cli import app
from tests.cerebellum.test_policy import _policy


@pytest.fixture
def good(tiny_ds, hash_language, tmp_path) -> Path:
    return save_checkpoint(_policy(tiny_ds, hash_language), tmp_path / "good")


def _edit_config(path: Path, **fields) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(fields)
    (path / "config.json").write_text(json.dumps(cfg))  # (json writes NaN for float("nan"))


def _ensemble(path: Path, members: list[str]) -> Path:
    path.mkdir(exist_ok=True)
    (path / "ensemble.json").write_text(json.dumps({"members": members}))
    return path


def test_a_config_json_holding_null_is_named(good, hash_language):
    (good / "config.json").write_text("null")
    with pytest.raises(CheckpointError, match=r"config.json must hold a JSON object, got null"):
        load_checkpoint(good, language=hash_language)


@pytest.mark.parametrize("fields, named", [
    ({"cameras": None}, "cameras"),
    ({"control_rate_hz": math.nan}, "control_rate_hz"),
    ({"control_rate_hz": 0}, "control_rate_hz"),
    ({"horizon": "16"}, "horizon"),
    ({"flow_temperature": -1}, "flow_temperature"),
    ({"known_instructions": [1, 2]}, "known_instructions"),
    ({"temporal_ensemble": math.inf}, "temporal_ensemble"),
])
def test_a_bad_config_field_is_named(good, hash_language, fields, named):
    _edit_config(good, **fields)
    with pytest.raises(CheckpointError, match=rf"config.json: {named} must"):
        load_checkpoint(good, language=hash_language)


def test_a_stats_file_that_is_not_a_regular_file_is_refused_at_once(good, hash_language):
    (good / "stats.json").unlink()
    os.symlink("/dev/zero", good / "stats.json")
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"stats.json is not a regular file"):
        load_checkpoint(good, language=hash_language)
    assert time.perf_counter() - t0 < 5


def test_non_finite_statistics_are_named(good, hash_language):
    stats = json.loads((good / "stats.json").read_text())
    key = next(iter(stats["stats"]))
    field = next(k for k, v in stats["stats"][key].items() if isinstance(v, list))
    stats["stats"][key][field][0] = math.nan
    (good / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(CheckpointError, match=rf"stats.json: stats\['{key}'\]\['{field}'\]\[0\] is not a finite"):
        load_checkpoint(good, language=hash_language)


def test_all_nan_weights_are_refused(good, hash_language):
    weights = load_file(str(good / "model.safetensors"))
    save_file({k: torch.full_like(v, math.nan) if v.is_floating_point() else v for k, v in weights.items()},
              str(good / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor '.+' holds NaN or infinite values"):
        load_checkpoint(good, language=hash_language)


def test_an_ensemble_naming_itself_or_a_cycle_is_refused(good, hash_language, tmp_path):
    with pytest.raises(CheckpointError, match=r"member '\.' is the ensemble itself"):
        load_checkpoint(_ensemble(tmp_path / "self", [".", "../good"]), language=hash_language)
    _ensemble(tmp_path / "a", ["../good", "../b"])
    _ensemble(tmp_path / "b", ["../good", "../a"])
    with pytest.raises(CheckpointError, match=r"member '\.\./b' is itself an ensemble"):
        load_checkpoint(tmp_path / "a", language=hash_language)
    (tmp_path / "self/ensemble.json").write_text("null")
    with pytest.raises(CheckpointError, match=r"ensemble.json must hold a JSON object"):
        load_checkpoint(tmp_path / "self", language=hash_language)


def test_config_types_are_checked_when_built_in_code_too():
    with pytest.raises(ValueError, match="cameras must be list"):
        PolicyConfig(cameras=None)
    with pytest.raises(ValueError, match="control_rate_hz must be > 0"):
        PolicyConfig(control_rate_hz=0.0)
    assert PolicyConfig(hf_backbone=Path("models/x")).hf_backbone == "models/x"  # a Path is kept as text


def _one_line_exit_2(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught error
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_the_cli_names_a_bad_checkpoint_in_one_line(good, tmp_path, monkeypatch):
    runner = CliRunner()
    _edit_config(good, cameras=None)
    _one_line_exit_2(runner.invoke(app, ["eval", "--policy", str(good), "--episodes", "1"]),
                     "config.json", "cameras")
    (good / "config.json").write_text("null")
    monkeypatch.setenv("EMBODIA_API_KEY", "k" * 32)
    _one_line_exit_2(runner.invoke(app, ["serve", "policy", "--checkpoint", str(good), "--port", "0"]),
                     "config.json", "null")
    ens = _ensemble(tmp_path / "self", [".", "../good"])
    _one_line_exit_2(runner.invoke(app, ["run", "pick up the red cube", "--policy", str(ens)]),
                     "ensemble.json", "itself")
