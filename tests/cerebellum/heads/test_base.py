import pytest

from embodia.cerebellum.heads import HEADS, HeadSpec, build_head, check_head_name


def test_registry_names_the_five_heads() -> None:
    assert list(HEADS) == ["flow", "tokens", "act", "diffusion", "l1"]


def test_unknown_head_is_a_clear_error_listing_them() -> None:
    with pytest.raises(ValueError, match="unknown head 'bogus'.*flow, tokens, act, diffusion, l1"):
        check_head_name("bogus")
    with pytest.raises(ValueError, match="unknown head"):
        build_head("bogus", HeadSpec(32, 2, 1, 6, 4))


def test_head_spec_round_trips_and_refuses_bad_fields() -> None:
    spec = HeadSpec(32, 2, 1, 6, 4, {"steps": 10})
    assert HeadSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown field"):
        HeadSpec.from_dict({**spec.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="head_spec.horizon"):
        HeadSpec.from_dict({**spec.to_dict(), "horizon": 0})
