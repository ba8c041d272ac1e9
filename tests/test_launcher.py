"""condorspawner-singleuser in a localpool job: ports published, stop before the limit."""

import json
import sys
from pathlib import Path

from condorspawner.quoting import submit_arguments

STANDIN = Path(__file__).resolve().parents[1] / "benchmarks" / "standin_server.py"


def test_launcher_publishes_ports_and_stops_before_the_runtime_limit(pool):
    secret = pool.submit_dir / "condorspawner.secret"
    secret.write_text(json.dumps({"env": {"JUPYTERHUB_SERVICE_PREFIX": "/user/x/"}}))
    secret.chmod(0o600)
    arguments = submit_arguments(
        [
            "-m",
            "condorspawner.launcher",
            "--hub-api",
            "direct",
            "--grace",
            "2",
            "--server",
            f"{sys.executable} {STANDIN}",
        ]
    )
    job = pool.submit(f"""
        executable = {sys.executable}
        transfer_executable = false
        arguments = {arguments}
        transfer_input_files = condorspawner.secret
        should_transfer_files = YES
        want_io_proxy = true
        allowed_execute_duration = 5
        output = launcher.out
        error = launcher.err
        log = launcher.log
        queue
    """)
    ad = pool.wait_for(job, lambda a: a.get("NotebookPort"), timeout=20)
    assert isinstance(ad["NotebookPort"], int) and "HubApiPort" not in ad
    # stopped by the launcher 2 s before the 5 s limit: a normal exit, not a hold
    ad = pool.wait_for(job, lambda a: a["JobStatus"] in (4, 5), timeout=30)
    assert (ad["JobStatus"], ad["ExitCode"]) == (4, 0), (
        pool.submit_dir / "launcher.err"
    ).read_text()
    assert secret.exists()  # the hub's copy; the job's copy was read and removed in the job
