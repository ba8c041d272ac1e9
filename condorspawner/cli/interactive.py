"""condorsub shell and condorsub tunnel: a terminal or a web service of a job, here."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from typing import Any

from condorspawner.cli.context import callers_tools, job_dir, job_request, site
from condorspawner.cli.exits import USAGE, CliError
from condorspawner.condor import check_job_ids
from condorspawner.render import InteractivePayload, Renderer
from condorspawner.request import RequestError


def shell(args: Any) -> int:
    """condor_submit -interactive with interactive.sub: a login shell in the chosen OS."""
    the_site = site()
    request = job_request(args, the_site)
    directory = job_dir(args.label or "", "shell")
    try:
        job = Renderer(the_site).render(request, InteractivePayload())
    except RequestError as err:
        raise CliError(str(err), USAGE) from None
    submit_file = job.write(directory)
    argv = [*callers_tools(the_site).command("condor_submit", []), "-interactive", str(submit_file)]
    try:
        return subprocess.run(argv, cwd=directory, check=False).returncode
    except FileNotFoundError:
        raise CliError("condor_submit is not installed here") from None


def tunnel(args: Any) -> int:
    """Forward 127.0.0.1:LOCAL here to 127.0.0.1:REMOTE_PORT in the job until Ctrl-C."""
    from proxy_tunnel import Tunnel, TunnelError

    try:
        (job_id,) = check_job_ids([args.job_id])
    except ValueError as err:
        raise CliError(str(err), USAGE) from None
    if "." not in job_id:
        job_id += ".0"
    if not 0 < args.remote_port < 65536:
        raise CliError(f"{args.remote_port} is not a port", USAGE)
    the_site = site()
    forward = Tunnel(
        job_id,
        args.remote_port,
        local_port=args.local_port,
        program=callers_tools(the_site).command("condor_ssh_to_job", []),
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await forward.start()
        except TunnelError as err:
            raise CliError(str(err)) from None
        print(
            f"http://127.0.0.1:{forward.local_port}/ -> port {args.remote_port} in job "
            f"{job_id} (Ctrl-C to stop)",
            flush=True,
        )
        try:
            while not stop.is_set() and not forward.failed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            await forward.close()
        if forward.failed:
            raise CliError(f"the tunnel gave up: {forward.failure}")
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
