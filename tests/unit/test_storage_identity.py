"""storage/identity.py does without re what the regular expressions said, and
config/cache.py finds the shipped profiles where lxpy.paths does."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from lxpy.storage.identity import _hostname_like, replace_names


def _re_replace(text: str, olds: list[str], new: str) -> str:
    alt = "|".join(re.escape(o) for o in olds)
    return re.compile(rf"(?<![\w.-])(?:{alt})(?![\w-])").sub(new, text)


_names = st.lists(st.text("ab.-_1é", min_size=1, max_size=4), min_size=1, max_size=3,
                  unique=True).map(lambda xs: sorted(xs, key=len, reverse=True))


@settings(max_examples=500, deadline=None)
@given(text=st.text("ab.-_ 1é\t\n#", max_size=40), olds=_names,
       new=st.text("xy", min_size=1, max_size=3))
def test_replace_names_is_the_regex(text, olds, new):
    assert replace_names(text, olds, new) == _re_replace(text, olds, new)


def test_replace_names_in_a_hosts_line():
    line = "127.0.1.1\tgold gold.lxpy gold-2 xgold gold_1 goldy\n"
    assert replace_names(line, ["gold"], "web") == \
        "127.0.1.1\tweb web.lxpy gold-2 xgold gold_1 goldy\n"


@given(st.text("aZ9.-_ é", max_size=6))
def test_hostname_like_is_the_regex(s):
    assert _hostname_like(s) == bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", s))


def test_shipped_profiles_are_where_paths_says():
    from lxpy.config.cache import shipped_config
    from lxpy.paths import shipped_dir
    assert shipped_config() == str(shipped_dir("config"))
