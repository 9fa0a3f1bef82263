import pytest

from embodia.brain.symbolic import SymbolicPlanner
from embodia.brain.testset import build_scenes, load_testset


@pytest.fixture(scope="session")
def testset():
    return load_testset()


@pytest.fixture(scope="session")
def scenes(testset):
    """Scene graphs of every test-set seed, from the real simulator."""
    fingerprints, _ = testset
    return build_scenes(sorted(fingerprints))


@pytest.fixture(scope="session")
def planner():
    return SymbolicPlanner("arm7")
