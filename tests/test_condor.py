"""The HTCondor command layer, fed what a real HTCondor 25.0 pool printed."""

import asyncio
import signal

import pytest

from condorspawner.condor import (
    Condor,
    CondorError,
    CondorTimeout,
    JobNotFound,
    ScheddUnavailable,
    check_job_ids,
    parse_json_ads,
    parse_terse,
)
from condorspawner.site import Pool
from tests.harness import case


def test_terse_output_of_real_submits():
    assert parse_terse(case("submit_terse")["stdout"]).job_ids == ["15.0"]
    three = parse_terse(case("submit_queue3")["stdout"])
    assert (three.cluster, three.first_proc, three.last_proc) == (16, 0, 2)
    assert three.job_ids == ["16.0", "16.1", "16.2"]
    assert parse_terse(case("submit_stdin")["stdout"]).job_ids == ["17.0", "17.1"]
    with pytest.raises(ValueError, match="unexpected condor_submit -terse output"):
        parse_terse(case("submit_plain")["stdout"])


def test_json_output_of_real_queries():
    assert parse_json_ads(case("q_empty_json")["stdout"]) == []
    assert parse_json_ads(case("q_unknown_job")["stdout"]) == []
    (ad,) = parse_json_ads(case("q_json_full")["stdout"])
    assert (ad["ClusterId"], ad["JobStatus"], ad["ContainerOS"]) == (14, 2, "Debian12")
    (done,) = parse_json_ads(case("history_exit3_json")["stdout"])
    assert (done["JobStatus"], done["ExitCode"], done["ExitBySignal"]) == (4, 3, False)
    (held,) = parse_json_ads(case("q_held_json")["stdout"])
    assert held["HoldReasonCode"] == 1 and held["HoldReason"].endswith("(by user alice)")


def test_job_ids_are_checked():
    assert check_job_ids(["12", "12.3", 7]) == ["12", "12.3", "7"]
    for bad in ("12.", "-1", "1.2.3", "all", "12 13", "1\n"):
        with pytest.raises(ValueError, match="is not a job id"):
            check_job_ids([bad])


async def test_submit_runs_as_the_user_with_site_environment(replay, tmp_path):
    replay("condor_submit", "submit_terse")
    pool = Pool(
        schedd="schedd@ap",
        collector="cm.example.org:9618",
        run_as=("env", "RUN_AS={user}"),
        environment={"CONDOR_CONFIG": "/site/config"},
    )
    result = await Condor(pool).submit("job.sub", user="alice", cwd=str(tmp_path))
    assert result.job_id == "15.0"
    (call,) = replay.calls()
    assert call["argv"][1:] == [
        "-name",
        "schedd@ap",
        "-pool",
        "cm.example.org:9618",
        "-terse",
        "job.sub",
    ]
    assert call["cwd"] == str(tmp_path) and call["CONDOR_CONFIG"] == "/site/config"
    assert Condor(pool).command("condor_q", ["-json"], user="alice")[:2] == ["env", "RUN_AS=alice"]


async def test_user_names_cannot_smuggle_arguments():
    condor = Condor(Pool(run_as=("sudo", "-n", "-u", "{user}")))
    with pytest.raises(ValueError, match="is not a user name"):
        condor.command("condor_q", [], user="-s")
    assert condor.command("condor_q", [], user=None) == ["condor_q"]


async def test_query_arguments(replay):
    replay("condor_q", "q_json_attrs")
    ads = await Condor().q(
        ["14.0"], constraint="IsNotebookJob", attributes=["ClusterId", "JobStatus"], all_users=True
    )
    assert ads and "ClusterId" in ads[0]
    assert replay.calls()[0]["argv"][1:] == [
        "-json",
        "-constraint",
        "IsNotebookJob",
        "-attributes",
        "ClusterId,JobStatus",
        "-allusers",
        "14.0",
    ]


async def test_no_jobs_is_an_empty_list(replay):
    replay("condor_q", "q_empty_json")
    replay("condor_history", "history_unknown")
    assert await Condor().q() == []
    # condor_history without -json prints a header; with -json nothing at all
    replay("condor_history", "q_empty_json")
    assert await Condor().history(["99999.0"], limit=1) == []
    assert replay.calls()[-1]["argv"][1:] == ["-json", "-limit", "1", "99999.0"]


async def test_unknown_job_is_not_found(replay):
    replay("condor_rm", "rm_unknown")
    replay("condor_hold", "hold_unknown")
    with pytest.raises(JobNotFound, match=r"job 99999\.0 not found") as info:
        await Condor().rm(["99999.0"])
    assert info.value.returncode == 1 and info.value.job_ids == ["99999.0"]
    with pytest.raises(JobNotFound):
        await Condor().hold(["99999.0"], reason="test")
    assert replay.calls()[-1]["argv"][1:] == ["-reason", "test", "99999.0"]


async def test_hold_release_rm_success(replay):
    replay("condor_hold", "hold_reason")
    replay("condor_release", "release")
    replay("condor_rm", "rm_reason")
    assert (await Condor().hold(["14.0"], reason="held by test")).strip() == "Job 14.0 held"
    assert (await Condor().release(["14.0"])).strip() == "Job 14.0 released"
    assert "marked for removal" in await Condor().rm(["20"], reason="removed by test")


async def test_unreachable_schedd_is_unknown_not_gone(replay):
    replay("condor_q", "q_constraint_bad")
    with pytest.raises(ScheddUnavailable) as info:
        await Condor().q(constraint="(((")
    assert not isinstance(info.value, JobNotFound)
    assert "Failed to fetch ads" in info.value.stderr


async def test_other_failures_carry_command_code_and_stderr(replay):
    replay("condor_submit", "submit_bad")
    with pytest.raises(CondorError) as info:
        await Condor().submit("bad.sub")
    err = info.value
    assert type(err) is CondorError and err.returncode == 1
    assert err.command == ["condor_submit", "-terse", "bad.sub"]
    assert "Unterminated double-quote" in err.stderr
    assert "The full arguments you specified were" in str(err)


async def test_a_slow_command_times_out_and_is_killed(replay):
    replay("condor_q", "q_empty_json", sleep=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CondorTimeout, match=r"no answer within 0.5 s"):
        await Condor(timeout=0.5).q()
    assert loop.time() - started < 5


def test_a_cancelled_command_is_killed_and_reaped_before_the_loop_closes(replay, monkeypatch):
    """A watcher stopped mid-query must not leave its ``condor_q`` behind: an unreaped
    subprocess transport, collected after its loop closed, raises "Event loop is
    closed" in ``__del__`` (it failed CI from an unrelated test)."""
    replay("condor_q", "q_empty_json", sleep=30)
    started: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def recording(*args, **kwargs):
        started.append(await spawn(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)

    async def cancel_mid_query() -> None:
        task = asyncio.ensure_future(Condor().q())
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()

    asyncio.run(cancel_mid_query())
    assert [p.returncode for p in started] == [-signal.SIGKILL]


async def test_a_missing_tool_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ScheddUnavailable, match="cannot run condor_q"):
        await Condor().q()


def test_a_connection_failure_is_unavailable_and_only_a_refusal_is_not_authorized():
    """SECMAN:2003 (HTCondor's SECMAN_ERR_CONNECT_FAILED) is a schedd that does not answer:
    a submission goes on to the next schedd; 2008-2010 and AUTHENTICATE are refusals."""
    from condorspawner.condor import NotAuthorized, _classify

    addr = "<10.0.0.1:9618?addrs=10.0.0.1-9618&noUDP&sock=schedd_1_2>"
    down = {
        "condor_q": f"\n-- Failed to fetch ads from: {addr} : ap1\n"
        f"SECMAN:2003:TCP connection to {addr} failed.\n",
        "condor_submit": "\nERROR: Failed to connect to queue manager ap1\n"
        f"SECMAN:2003:TCP connection to {addr} failed.\n",
    }
    for tool, stderr in down.items():
        assert type(_classify([tool], 1, stderr)) is ScheddUnavailable, tool
    refused = (
        "\nERROR: Failed to connect to local queue manager\n"
        "AUTHENTICATE:1003:Failed to authenticate with any method\n",
        "\nERROR: Failed to connect to local queue manager\n"
        'SECMAN:2010:Received "DENIED" from server for user a@h using method IDTOKENS.\n',
    )
    for stderr in refused:
        assert type(_classify(["condor_submit"], 1, stderr)) is NotAuthorized
