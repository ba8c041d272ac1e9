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


def test_ports_as_planned_and_the_tunnels_port_left_to_the_tunnel():
    import socket

    from condorspawner.launcher import choose_ports

    with socket.socket() as taken, socket.socket() as tunnel:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        tunnel.bind(("127.0.0.1", 0))
        tunnel.listen()  # the hub's ssh -R got there first
        busy, q = taken.getsockname()[1], tunnel.getsockname()[1]
        port, hub_port = choose_ports({"notebook": busy, "hub_api": q}, tunnel=True)
        assert port != busy and hub_port == q
    free = free_port_here()
    assert choose_ports({"notebook": free, "hub_api": q}, tunnel=True) == (free, q)
    assert choose_ports({"notebook": free}, tunnel=False) == (free, None)


def free_port_here() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
