"""The fault-injection run of benchmarks/faults.py as a test, on localpool and (the
htcondor tier) the real HTCondor: its checks must all hold."""

import os

import pytest

from benchmarks import faults

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="real accounts and sudo need root"),
]


def test_five_sessions_survive_every_fault_and_leave_nothing_behind(backend):
    figures = faults.run(sessions=5, outage=15, backend=backend)
    assert figures["servers lost during a 15 s condor_q outage"] == 0
    assert figures["notice a hold, s"] < 30 and figures["notice a removal, s"] < 30
    assert figures["most tunnels of one session at once"] == 1
    assert figures["requests hammered at the hub meanwhile"] > 0
