import numpy as np
import pytest

from embodia.cerebellum.config import PolicyConfig
from embodia.serve.protocol import (
    RequestError,
    make_metadata,
    spec_from_config,
    validate_observation,
)
from tests.serve.conftest import SMALL, make_obs

CFG = PolicyConfig(**SMALL)
SPEC = spec_from_config(CFG)


def _with(**changes):
    obs = make_obs(CFG)
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            obs.pop(k)
        else:
            obs[k] = v
    return obs


def test_valid_observation_and_aliases():
    ok = validate_observation(make_obs(CFG), SPEC)
    assert ok.state.dtype == np.float32 and set(ok.images) == set(SPEC.image_keys)
    obs = _with(task=None, embodiment=None)
    obs["prompt"] = "pick it"
    obs["observation.state"] = obs["observation.state"].astype(np.float64)
    checked = validate_observation(obs, SPEC)
    assert checked.task == "pick it" and checked.state.dtype == np.float32


@pytest.mark.parametrize("obj, kind, match", [
    ([1, 2], "bad_observation", "must be a map"),
    ({1: 2}, "bad_observation", "keys must be strings"),
    (_with(observation__images__wrist=None), "bad_observation", "missing \\['observation.images.wrist'\\]"),
    (_with(observation__images__wrist=None, observation__images__wirst=np.zeros((32, 32, 3), np.uint8)),
     "bad_observation", "missing .*does not read: \\['observation.images.wirst'\\]"),
    (_with(observation__state=np.full(15, 1e300)), "bad_observation", r"'observation.state'\[0\] = 1e\+300 is outside the float32 range"),
    (_with(observation__state=np.r_[np.zeros(14), -1e39]), "bad_observation", r"'observation.state'\[14\] .* float32 range"),
    (_with(observation__state=np.zeros(14, np.float32)), "bad_observation", r"shape \(15,\), got \(14,\)"),
    (_with(observation__state=np.zeros(15, np.int32)), "bad_observation", "dtype int32"),
    (_with(observation__state=[0.0] * 15), "bad_observation", "numpy array, got list"),
    (_with(observation__state=np.full(15, np.nan, np.float32)), "bad_observation", "NaN"),
    (_with(observation__images__front=np.zeros((32, 32, 3), np.float32)), "bad_observation", "must be uint8"),
    (_with(observation__images__front=np.zeros((3, 32, 32), np.uint8)), "bad_observation", r"\(32, 32, 3\)"),
    (_with(task=None), "bad_observation", "instruction"),
    (_with(task="x" * 5000), "bad_observation", "5000 characters"),
    (_with(embodiment="humanoid_upper"), "wrong_embodiment", "humanoid_upper"),
])
def test_bad_observations_name_the_problem(obj, kind, match):
    with pytest.raises(RequestError, match=match) as e:
        validate_observation(obj, SPEC)
    assert e.value.kind == kind
    again = RequestError.from_frame(e.value.frame())
    assert (again.kind, again.message) == (kind, e.value.message)


def test_extra_keys_are_ignored_and_listed():
    """A robot (or TabletopEnv) may send more than the policy reads: it is served, and the
    keys it sent in vain are reported so the server can list them."""
    obs = _with(observation__environment_state=np.zeros(40), observation__images__side=np.zeros((8, 8, 3), np.uint8))
    obs["joint_torques"] = [0.0] * 7
    checked = validate_observation(obs, SPEC)
    assert checked.ignored == ("joint_torques", "observation.environment_state", "observation.images.side")
    assert checked.env_state is None and set(checked.images) == set(SPEC.image_keys)


def test_a_privileged_policy_requires_the_environment_state():
    import dataclasses

    cfg = dataclasses.replace(CFG, env_state_dim=6, env_state_input="privileged")
    spec = spec_from_config(cfg)
    with pytest.raises(RequestError, match="missing \\['observation.environment_state'\\]"):
        validate_observation(make_obs(cfg), spec)
    ok = validate_observation(_with(observation__environment_state=np.arange(6.0)), spec)
    assert ok.env_state.dtype == np.float32 and ok.ignored == ()
    assert make_metadata(cfg, 1024).to_dict()["observation"]["env_state_dim"] == 6
    with pytest.raises(RequestError, match="'observation.environment_state'.*float32 range"):
        validate_observation(_with(observation__environment_state=np.full(6, 1e300)), spec)


def test_metadata_names_embodiment_action_space_chunk_and_rates():
    md = make_metadata(CFG, 1024).to_dict()
    assert md["embodiment"] == "arm7" and md["chunk_length"] == 4 and md["action_dim"] == 7
    assert md["action_space"]["name"] == "ee_delta" and md["action_space"]["gripper_dims"] == [6]
    assert md["rates"] == {"control_hz": 10.0, "chunk_hz": 5.0}
    assert md["observation"]["image_shape"] == [32, 32, 3]
