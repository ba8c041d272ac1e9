"""HTCondor quoting: examples from the manual and from a real pool, and round trips."""

import classad2
import htcondor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condorspawner import quoting
from condorspawner.quoting import QuotingError


def expand(command: str, value: str) -> str:
    """What HTCondor's own submit parser makes of ``command = value`` (macros expanded)."""
    sub = htcondor2.Submit(f"executable = /bin/true\n{command} = {value}\nqueue\n")
    return sub.expand(command)


def test_environment_as_recorded_on_a_real_pool(reference):
    # The recorded job was submitted with this line and saw FOO=bar and BAZ=two words.
    seen = (reference / "cases/submit_envdump/job_stdout").read_text().splitlines()
    assert "FOO=bar" in seen and "BAZ=two words" in seen
    parsed = quoting.parse_submit_environment("\"FOO=bar BAZ='two words'\"")
    assert parsed == {"FOO": "bar", "BAZ": "two words"}
    ours = quoting.submit_environment({"FOO": "bar", "BAZ": "two words"})
    assert quoting.parse_submit_environment(expand("environment", ours)) == parsed


def test_arguments_from_a_real_job_ad(reference):
    ad_text = (reference / "cases/submit_envdump/job_stdout").read_text().split("---\n")[2]
    ad = classad2.parseOne(ad_text)
    words = quoting.split_v2(ad["Arguments"])
    assert words[0] == "-c"
    assert words[1].startswith("env | sort; echo ---; pwd; ls -la;")
    assert words[1].endswith("cat in.txt")
    # Our spelling differs from HTCondor's (one quoted section per word), the words do not.
    assert quoting.split_v2(quoting.join_v2(words)) == words


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["a", "b c"], "\"a 'b c'\""),
        (["it's"], "\"'it''s'\""),
        (['say "hi"'], '"\'say ""hi""\'"'),
        ([""], "\"''\""),
        (["$HOME"], '"$(DOLLAR)HOME"'),
    ],
)
def test_arguments_spelling(args, value):
    assert quoting.submit_arguments(args) == value


def test_old_syntax_is_read_too():
    assert quoting.parse_submit_arguments("a b  c") == ["a", "b", "c"]
    assert quoting.parse_submit_environment("A=1;B=two words") == {"A": "1", "B": "two words"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [("a\x00b", "NUL"), ("x$$(Memory)", r"\$\$"), ("two\nlines", "control character")],
)
def test_unrepresentable_text_is_refused(bad, message):
    with pytest.raises(QuotingError, match=message):
        quoting.submit_arguments([bad])


def test_unpaired_double_quote_is_an_error():
    with pytest.raises(QuotingError, match="unpaired"):
        quoting.unquote_submit_value('"a " b"')
    with pytest.raises(QuotingError, match="unterminated"):
        quoting.split_v2("'open")


def test_paths_refuse_what_breaks_file_lists():
    assert quoting.submit_path("/data/$USER/x") == "/data/$(DOLLAR)USER/x"
    for bad in ("", " lead", "a,b", 'q"uote', "ends\\", "new\nline"):
        with pytest.raises(QuotingError):
            quoting.submit_path(bad, in_list=True)


text = st.text(st.characters(codec="utf-8"), max_size=200)


@settings(max_examples=500, deadline=None)
@given(st.lists(text, max_size=6))
def test_arguments_round_trip_through_htcondors_parser(args):
    try:
        value = quoting.submit_arguments(args)
    except QuotingError:
        return
    assert quoting.parse_submit_arguments(expand("arguments", value)) == args


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), text, max_size=5)
)
def test_environment_round_trips_through_htcondors_parser(env):
    try:
        value = quoting.submit_environment(env)
    except QuotingError:
        return
    assert quoting.parse_submit_environment(expand("environment", value)) == env


@settings(max_examples=500, deadline=None)
@given(text)
def test_classad_strings_round_trip(value):
    try:
        quoted = quoting.submit_classad_string(value)
    except QuotingError:
        assert "\x00" in value or "$$" in value
        return
    assert classad2.ExprTree(expand("MY.X", quoted)).eval() == value


def test_a_literal_dollar_macro_is_refused_where_macros_apply():
    # HTCondor re-reads $(DOLLAR)'s result: "$(DOLLAR)(DOLLAR)" becomes "$", not "$(DOLLAR)".
    assert expand("foo", "$(DOLLAR)(DOLLAR)") == "$"
    with pytest.raises(QuotingError, match="DOLLAR"):
        quoting.submit_arguments(["$(dollar)"])
    # ClassAd strings carry it: their '$' never reaches macro expansion.
    quoted = quoting.submit_classad_string("$(DOLLAR)")
    assert classad2.ExprTree(expand("MY.X", quoted)).eval() == "$(DOLLAR)"


@pytest.mark.parametrize("bad", ["(((", "queue]", "x) ] [y = (1", "x); a = 1; b = (1", "true // c"])
def test_expressions_must_be_one_whole_expression(bad):
    with pytest.raises(QuotingError, match="single ClassAd expression"):
        quoting.submit_classad_expr(bad)
    assert quoting.submit_classad_expr('a == "]"') == 'a == "]"'
