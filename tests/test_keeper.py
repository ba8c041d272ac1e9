"""The keeper: one process for every tunnel of a hub, which dies with the hub (issue 27)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from proxy_tunnel.kept import keeper_pid, run_kept
from proxy_tunnel.procs import alive, descendants, processes_carrying
from tests.commands import read_line
from tests.sessions import cmdline, program
from tests.waiting import wait_until, wait_until_async


def tree_of(mark: str) -> str:
    """A stand-in for one tunnel, all of it carrying ``mark`` (a number of seconds): a
    'condor_ssh_to_job' whose 'ssh' runs in a session of its own, as sudo's use_pty
    makes it."""
    return f"setsid bash -c 'exec -a ssh sleep {mark}' & exec -a condor_ssh_to_job sleep {mark}"


def a_mark() -> str:
    return str(10**8 + secrets.randbelow(9 * 10**8))  # nothing else on the machine sleeps that long


HUB = """\
import asyncio, sys
from proxy_tunnel.kept import keeper_pid, run_kept
from tests.test_keeper import tree_of

async def main(mark, count, script=None):
    for _ in range(count):
        await run_kept([sys.executable, script, mark] if script else ["bash", "-c", tree_of(mark)])
    print(keeper_pid(), flush=True)
    await asyncio.sleep(600)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:]))
"""


def start_hub(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """A stand-in hub (its own process) that keeps tunnels, and its keeper's pid."""
    err = tmp_path / "hub.err"
    hub = subprocess.Popen(
        [sys.executable, "-c", HUB, *args],
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        return hub, int(read_line(hub, r"^\d+$", 60, err))
    except BaseException:
        hub.kill()
        raise


def test_one_keeper_keeps_twenty_tunnels_and_ends_them_all_when_the_hub_is_killed(tmp_path):
    """A SIGKILLed hub with 20 tunnels leaves no tunnel process behind after a minute;
    while it ran, one keeper (not one per tunnel) held them all."""
    mark = a_mark()
    hub, keeper = start_hub(tmp_path, mark, "20")
    try:

        def tunnels() -> list[int]:
            return [p for p in processes_carrying(mark) if p != hub.pid]

        expected = ["condor_ssh_to_job"] * 20 + ["ssh"] * 20
        wait_until(
            lambda: sorted(program(p) for p in tunnels()) == expected,
            30,
            lambda: f"20 tunnels up: {sorted(program(p) for p in tunnels())}",
        )
        keepers = [p for p in descendants(hub.pid) if "proxy_tunnel.keeper" in cmdline(p)]
        assert keepers == [keeper]
        assert set(tunnels()) <= set(descendants(keeper))
    finally:
        hub.kill()
        hub.wait(timeout=10)
    wait_until(lambda: not tunnels(), 60, "every tunnel process ended", 0.2)


async def test_a_command_ends_ssh_first_and_tells_its_code_and_errors():
    mark = a_mark()
    kept = await run_kept(["bash", "-c", tree_of(mark)])
    ssh = await wait_until_async(
        lambda: [p for p in processes_carrying(mark) if program(p) == "ssh"], 5, "its ssh", 0.05
    )
    kept.end()
    assert await asyncio.wait_for(kept.wait(), 15) == -signal.SIGTERM
    assert not any(alive(p) for p in [kept.pid, *ssh])
    said = await run_kept(["sh", "-c", "echo 'Use -auto-retry' >&2; exit 3"])
    assert await asyncio.wait_for(said.wait(), 10) == 3
    assert "Use -auto-retry" in said.stderr
    missing = await run_kept(["/nonexistent/condor_ssh_to_job"])
    assert await missing.wait() == 127 and "cannot run" in missing.stderr


async def test_what_leaves_a_tunnel_tree_is_ended_and_so_is_what_is_left_of_it():
    """A process that daemonizes comes back to the keeper from no tree: it is killed at
    the keeper's next look (every 10 s, and whenever a tree ends: one does here)."""
    mark = a_mark()
    kept = await run_kept(["bash", "-c", f"setsid -f sleep {mark}; exec sleep {mark}"])
    await wait_until_async(lambda: len(processes_carrying(mark)) == 2, 5, "both sleep", 0.05)
    assert await asyncio.wait_for((await run_kept(["true"])).wait(), 10) == 0
    await wait_until_async(
        lambda: processes_carrying(mark) == [kept.pid], 15, "the stray process ended", 0.1
    )
    os.kill(kept.pid, signal.SIGKILL)
    assert await asyncio.wait_for(kept.wait(), 10) == -signal.SIGKILL


async def test_a_killed_keeper_takes_its_tunnels_and_a_new_one_takes_over():
    mark = a_mark()
    kept = await run_kept(["bash", "-c", tree_of(mark)])
    first = keeper_pid()
    await wait_until_async(lambda: len(processes_carrying(mark)) == 2, 5, "the tree", 0.05)
    os.kill(first, signal.SIGKILL)
    assert await asyncio.wait_for(kept.wait(), 10) == -signal.SIGKILL
    await wait_until_async(lambda: not processes_carrying(mark), 10, "its tree killed", 0.1)
    again = await run_kept(["true"])
    assert await asyncio.wait_for(again.wait(), 10) == 0
    assert keeper_pid() not in (None, first)


CHAIN = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork():
    time.sleep(300)  # the tunnel's command stays
for _ in range(3000):  # bounded: five minutes at most
    if os.fork():
        os._exit(0)  # the parent goes: its child is an orphan, the keeper's
    time.sleep(0.1)
"""


def test_a_process_that_keeps_leaving_its_tree_dies_with_the_hub(tmp_path):
    """Review of issue 27: each generation ignores SIGTERM, forks and exits, so each is a
    new orphan of the keeper; the keeper still ends, and the chain with it."""
    mark, script = a_mark(), tmp_path / "chain.py"
    script.write_text(CHAIN)
    hub, keeper = start_hub(tmp_path, mark, "1", str(script))

    def chain() -> list[int]:
        return [p for p in processes_carrying(mark) if p != hub.pid]

    try:
        wait_until(lambda: len(chain()) > 1, 10, "the chain runs", 0.05)
        time.sleep(1)  # generations, each an orphan of the keeper
    finally:
        hub.kill()
        hub.wait(timeout=10)
    wait_until(lambda: not alive(keeper), 60, "the keeper ended", 0.2)
    wait_until(lambda: not chain(), 10, "no generation of the chain is left", 0.2)


async def test_a_command_that_cannot_be_run_is_that_commands_failure_alone():
    """Review of issue 27: an argument the kernel refuses (a NUL byte) fails that command;
    the keeper goes on for every other."""
    await (await run_kept(["true"])).wait()
    keeper = keeper_pid()
    bad = await run_kept(["sh", "-c", "a\0b"])
    assert await asyncio.wait_for(bad.wait(), 10) == 127 and "cannot run" in bad.stderr
    fine = await run_kept(["true"])
    assert await asyncio.wait_for(fine.wait(), 10) == 0 and keeper_pid() == keeper


async def test_many_large_error_outputs_at_once_reach_the_hub_whole():
    """Review of issue 27: twenty commands each writing 64 KB of bytes that are not UTF-8
    and ending at once (every end a SIGCHLD during the keeper's writes): every exit is
    told, with the end of what was written."""
    script = "head -c 65536 /dev/zero | tr '\\0' '\\377' >&2; echo 'the last line' >&2; exit 7"
    kept = [await run_kept(["sh", "-c", script]) for _ in range(20)]
    codes = await asyncio.wait_for(asyncio.gather(*(k.wait() for k in kept)), 30)
    assert codes == [7] * 20
    assert all(k.stderr.rstrip().endswith("the last line") for k in kept)
    assert all(len(k.stderr) <= 3 * 8192 for k in kept)  # a bounded tail


def test_a_process_is_signalled_only_while_it_is_the_one_seen():
    """Review of issue 27: a pid noted in a tree and later reused by another process is
    not that tree's: the keeper asks for the same start time."""
    from proxy_tunnel.keeper import Kept
    from proxy_tunnel.procs import Snapshot

    me = os.getpid()
    kept = Kept("1", subprocess.Popen(["true"]), start=None)
    kept.process.wait()
    snap = Snapshot()
    kept.members = {me: snap.start(me)}
    assert kept.living(snap) == [me]
    kept.members = {me: snap.start(me) - 1}  # the same pid, another process
    assert kept.living(snap) == []
