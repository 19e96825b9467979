"""A prior as a run setting (pyrodip.run.prior_spec): the spec's first number is the scale, the
help says so, and a spec's scale and a different prior_scale given together are refused."""

import pytest

from pyrodip.errors import InvalidInputError
from pyrodip.run.prior_spec import check_prior, prior_help, scale_apart


def test_the_help_shows_the_scale_before_a_priors_own_numbers():
    help_text = prior_help()
    assert "studentt[:SCALE[:DF]]" in help_text and "studentt[:DF]" not in help_text
    assert "NAME::ARGS keeps --prior-scale" in help_text


@pytest.mark.parametrize(("given", "apart"), [
    ({"prior": "studentt:3"}, {"prior": "studentt", "prior_scale": 3.0}),
    ({"prior": "studentt::3"}, {"prior": "studentt::3"}),
    ({"prior": "mixture:0.1:0.25:20"}, {"prior": "mixture::0.25:20", "prior_scale": 0.1}),
    ({"prior": "normal:0.2", "prior_scale": 0.2}, {"prior": "normal", "prior_scale": 0.2}),
    ({"steps": 3}, {"steps": 3}),
])
def test_the_scale_moves_out_of_the_spec(given, apart):
    assert scale_apart(given, "settings") == apart


def test_two_different_scales_in_one_source_are_refused():
    with pytest.raises(InvalidInputError, match="^the overrides: prior 'laplace:0.1' and "
                                                "prior_scale 0.2 differ: give one$"):
        scale_apart({"prior": "laplace:0.1", "prior_scale": 0.2}, "the overrides")
    with pytest.raises(InvalidInputError, match="^prior must be a string, got 3$"):
        scale_apart({"prior": 3}, "settings")


def test_an_unknown_prior_name_is_refused():
    assert check_prior("prior", "laplace::2") == "laplace::2"
    with pytest.raises(InvalidInputError, match="unknown prior 'lapalce'"):
        check_prior("prior", "lapalce:0.1")
