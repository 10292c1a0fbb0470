"""A merge_method close to one of dogerm's gets its name suggested; mergekit's own names never do."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mergekit.merge_methods import registry

from dogerm_mergekit import methods


def test_mergekit_methods_and_ours_are_never_misspellings():
    import dogerm_mergekit.method  # noqa: F401  (registers dogerm as a console script run would)

    names = [m.spec.name for m in registry.registered_methods() if m.spec.name not in methods.ours()]
    assert "ties" in names and len(names) > 10
    for name in [*names, *(n.upper() for n in names), *methods.ours(), "dogerm_slerp", "dogerm_karcher"]:
        assert methods.misspelling(name) is None, name


def test_unrelated_names_get_no_suggestion():
    for name in ("frankenmerge", "average", "", "x", "reward_model", None, 3):
        assert methods.misspelling(name) is None


@given(st.sampled_from(methods.ours()), st.data())
def test_one_edit_away_from_ours_suggests_it(name, data):
    """Swap two neighbours, drop a letter, change the case, or write `-` for `_`: the name comes back."""
    edit = data.draw(st.sampled_from(["swap", "drop", "case", "dash"]))
    i = data.draw(st.integers(1, len(name) - 2))
    wrong = {"swap": name[:i] + name[i + 1] + name[i] + name[i + 2:], "drop": name[:i] + name[i + 1:],
             "case": name[:i] + name[i:].upper(), "dash": name.replace("_", "-")}[edit]
    if wrong != name and wrong not in methods.ours():
        assert methods.misspelling(wrong) == name, wrong


def test_the_configuration_reader_refuses_a_misspelling_before_the_schema(tmp_path):
    from dogerm_mergekit.config_file import read_config
    from dogerm_mergekit.errors import DogeRMConfigError

    for wrong, right in {"dogrem": "dogerm", "DOGERM_TIES": "dogerm_ties", "dogerm_dela": "dogerm_della"}.items():
        with pytest.raises(DogeRMConfigError, match=f"`{wrong}` is not a merge method; did you mean `{right}`"):
            read_config(f"merge_method: {wrong}\nmodels: oops\n", "c.yml")
    with pytest.raises(DogeRMConfigError, match="dogerm offers dogerm, dogerm_linear"):
        read_config("merge_method: dogerm_slerp\n", "c.yml")
