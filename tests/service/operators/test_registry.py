import pytest

from service.operators import available_operators, create_operator


def test_classical_operators_are_listed_with_params():
    infos = {info.name: info for info in available_operators()}
    assert {"bt2408", "bt2446a", "inverse_reinhard"} <= set(infos)
    assert "peak_nits" in {p.name for p in infos["inverse_reinhard"].params}


def test_unknown_operator_names_the_choices():
    with pytest.raises(ValueError, match="expected one of"):
        create_operator("nope")


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="does not take"):
        create_operator("bt2408", peak_nits=1000.0, gamma=2.2)


@pytest.mark.parametrize("peak", [50.0, 20000.0])
def test_peak_out_of_range(peak):
    with pytest.raises(ValueError, match="out of range"):
        create_operator("bt2446a", peak_nits=peak)
