"""CondorSpawner end to end: real JupyterHub, proxy, singleuser server, OpenSSH, localpool."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="jobs in network namespaces need root")


def test_spawn_with_options_through_the_rest_api(hub, pool):
    model = hub.spawn("alice", {"cpus": 2, "container": "Debian12"})
    assert model["servers"][""]["ready"]
    status, _ = hub.api("GET", "/user/alice/api/status", through_proxy=True)
    assert status == 200
    job = hub.job_of("alice")
    ad = pool.ad(job)
    assert ad["RequestCpus"] == 2 and ad["ContainerOS"] == "Debian12"
    assert ad["CondorSpawnerKind"] == "notebook"
