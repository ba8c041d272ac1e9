"""Both readers of HTCondor's new syntax, held to what HTCondor itself made of descriptions.

localpool reads ``arguments`` and ``environment`` with its own code
(``localpool.submit.v2syntax``), the product with ``condorspawner.quoting``; neither
may lean on the other, or a mistake both make would pass every test. Each
case here is one a real pool parsed (the recordings in ``tests/data/htcondor``:
job ads, what the jobs printed) or one the condor_submit manual spells out,
and both readers must give what HTCondor gave.
"""

from __future__ import annotations

import subprocess

import classad2
import htcondor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condorspawner import quoting
from localpool.submit import v2syntax
from localpool.submit.description import INTERACTIVE_ARGS

SIDES = ("localpool", "condorspawner")
ERRORS = (v2syntax.V2SyntaxError, quoting.QuotingError)
ARGUMENTS = {"localpool": v2syntax.parse_arguments, "condorspawner": quoting.parse_submit_arguments}
RAW_WORDS = {"localpool": v2syntax.split_words, "condorspawner": quoting.split_v2}
ENVIRONMENT = {
    "localpool": v2syntax.parse_environment,
    "condorspawner": quoting.parse_submit_environment,
}
RAW_ENVIRONMENT = {
    "localpool": v2syntax.environment_from_raw,
    "condorspawner": quoting.parse_v2_environment,
}
# submit_envdump's description (NOTES.md), and what the job saw: FOO=bar, BAZ=two words
ENVDUMP_ENVIRONMENT = "\"FOO=bar BAZ='two words'\""


def quoted(raw: str) -> str:
    """The submit value whose raw text is ``raw`` (what a description says for the ad's value)."""
    return '"' + raw.replace('"', '""') + '"'


def envdump(reference) -> tuple[list[str], classad2.ClassAd]:
    """submit_envdump's job output: its environment lines and its own job ad."""
    sections = (reference / "cases/submit_envdump/job_stdout").read_text().split("---\n")
    return sections[0].splitlines(), classad2.parseOne(sections[2])


def history_commands(reference) -> dict[str, str]:
    """Job id -> raw Arguments, from the CMD column of the recorded ``condor_history``."""
    lines = (reference / "cases/history_limit/stdout").read_text().splitlines()[1:]
    commands = {}
    for line in lines:
        job, *_, command = line.split(None, 8)
        commands[job] = command.split(" ", 1)[1]  # after the executable's name
    return commands


@pytest.mark.parametrize("side", SIDES)
def test_the_environment_a_real_job_saw(side, reference):
    seen, ad = envdump(reference)
    expected = {"FOO": "bar", "BAZ": "two words"}
    assert {f"{k}={v}" for k, v in expected.items()} <= set(seen)
    assert ENVIRONMENT[side](ENVDUMP_ENVIRONMENT) == expected
    assert RAW_ENVIRONMENT[side](ad["Environment"]) == expected  # "BAZ=two' 'words FOO=bar"


@pytest.mark.parametrize("side", SIDES)
def test_the_arguments_a_real_job_ran_with(side, reference):
    # submit_exit3: the job printed out-line and err-line and exited 3.
    raw = history_commands(reference)["23.0"]
    words = RAW_WORDS[side](raw)
    assert words == ["-c", "echo out-line; echo err-line >&2; exit 3"]
    assert ARGUMENTS[side](quoted(raw)) == words
    ran = subprocess.run(["/bin/sh", *words], capture_output=True, text=True, check=False)
    case = reference / "cases/submit_exit3"
    history = (reference / "cases/history_exit3_json/stdout").read_text()
    assert ran.stdout == (case / "job_stdout").read_text()
    assert ran.stderr == (case / "job_stderr").read_text()
    assert f'"ExitCode": {ran.returncode},' in history


@pytest.mark.parametrize("side", SIDES)
def test_the_arguments_of_the_job_that_dumped_its_environment(side, reference):
    _, ad = envdump(reference)
    raw = ad["Arguments"]
    assert history_commands(reference)["22.0"] == raw
    words = RAW_WORDS[side](raw)
    assert ARGUMENTS[side](quoted(raw)) == words
    assert len(words) == 2 and words[0] == "-c"
    script = words[1]
    assert script.startswith("env | sort; echo ---; pwd; ls -la; echo ---; cat $_CONDOR_JOB_AD;")
    assert script.endswith("cat .chirp.config 2>/dev/null; echo ---; cat in.txt")
    output = (reference / "cases/submit_envdump/job_stdout").read_text()
    assert script.count("echo ---") == output.count("---\n")  # one shell ran it all


def test_localpool_spells_raw_text_as_htcondor_does(reference):
    _, ad = envdump(reference)
    commands = history_commands(reference)
    for raw in (ad["Arguments"], commands["22.0"], commands["23.0"]):
        assert v2syntax.join_words(v2syntax.split_words(raw)) == raw
    # HTCondor's ad lists the variables by name (localpool keeps the description's order)
    env = v2syntax.environment_from_raw(ad["Environment"])
    assert v2syntax.join_words(f"{k}={v}" for k, v in sorted(env.items())) == ad["Environment"]


@pytest.mark.parametrize("side", SIDES)
def test_htcondors_own_interactive_description(side, reference):
    # files/interactive.sub, which condor_submit -interactive queued in submit_interactive:
    # /bin/sh ran the one script word and waited for the ssh session.
    sub = htcondor2.Submit((reference / "files/interactive.sub").read_text())
    arguments, environment = sub.expand("arguments"), sub.expand("environment")
    assert arguments == f'"{INTERACTIVE_ARGS}"'  # localpool queues the same command
    assert ARGUMENTS[side](arguments) == [
        "-c",
        "sleep 180 && while test -d ${_CONDOR_SCRATCH_DIR}/.condor_ssh_to_job_1; "
        "do /bin/sleep 3; done",
    ]
    assert ENVIRONMENT[side](environment) == {"TMOUT": "7200"}


@pytest.mark.parametrize("side", SIDES)
def test_an_unterminated_double_quote_is_refused(side, reference):
    stderr = (reference / "cases/submit_bad/stderr").read_text()
    value = stderr.split("The full arguments you specified were: ", 1)[1].strip()
    assert value == '"unterminated'
    with pytest.raises(ERRORS):
        ARGUMENTS[side](value)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"3 simple arguments"', ["3", "simple", "arguments"]),
        ("\"one 'two with spaces' 3\"", ["one", "two with spaces", "3"]),
        (
            "\"one \"\"two\"\" 'spacey ''quoted'' argument'\"",
            ["one", '"two"', "spacey 'quoted' argument"],
        ),
    ],
)
def test_the_manuals_arguments_examples(side, value, words):
    assert ARGUMENTS[side](value) == words


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("value", "env"),
    [
        (
            "\"one=1 two=\"\"2\"\" three='spacey ''quoted'' value'\"",
            {"one": "1", "two": '"2"', "three": "spacey 'quoted' value"},
        ),
        (
            "one=1;two=2;three=\"quotes have no 'special' meaning\"",
            {"one": "1", "two": "2", "three": "\"quotes have no 'special' meaning\""},
        ),
    ],
)
def test_the_manuals_environment_examples(side, value, env):
    assert ENVIRONMENT[side](value) == env


@pytest.mark.parametrize("value", ['"FOO"', '"=x"', "FOO", "A=1;=x"])
def test_localpool_refuses_an_entry_that_is_not_name_value(value):
    # The manual: each entry has the form <name>=<value>.
    with pytest.raises(v2syntax.V2SyntaxError):
        v2syntax.parse_environment(value)


def _outcome(read, value):
    try:
        return read(value)
    except ERRORS:
        return "refused"


raw_text = st.text(st.sampled_from(["a", "b", " ", "\t", "'", '"', "="]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(raw_text)
def test_the_readers_agree_on_arguments(text):
    for value in (text, f'"{text}"', quoted(text)):
        if value.startswith('"'):
            assert _outcome(v2syntax.parse_arguments, value) == _outcome(
                quoting.parse_submit_arguments, value
            )
    assert _outcome(v2syntax.split_words, text) == _outcome(quoting.split_v2, text)


@settings(max_examples=300, deadline=None)
@given(raw_text)
def test_what_localpool_reads_as_an_environment_the_product_reads_alike(text):
    # (The product also takes entries without '=' or without a name; localpool refuses them.)
    for value in (f'"{text}"', quoted(text)):
        mine = _outcome(v2syntax.parse_environment, value)
        if mine != "refused":
            assert quoting.parse_submit_environment(value) == mine
