import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from embodia.body.env import TabletopEnv  # noqa: E402


@pytest.fixture
def make_env():
    envs = []

    def _make(**kw):
        kw.setdefault("cameras", ())
        env = TabletopEnv(**kw)
        envs.append(env)
        return env

    yield _make
    for e in envs:
        e.close()
