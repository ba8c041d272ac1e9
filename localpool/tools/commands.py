"""The ``condor_*`` commands of localpool, with real HTCondor's output and exit codes.

The pool process runs :func:`run` for each request of a ``condor_X`` client
(``localpool.clients.client``), dispatching on the program name to the module of
each command (``queue_tool``, ``status_tool``, ``actions``, ``qedit``, and
``localpool.submit.tool``). Outputs follow what a real HTCondor 25.0 pool printed
(``tests/data/htcondor``): formats, messages, codes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localpool.schedd.schedds import ScheddError, resolve
from localpool.schedd.store import PoolNotFound, Store
from localpool.security.privs import Account
from localpool.security.tokens import AuthError, authenticate
from localpool.tools.actions import ACTIONS, Usage, job_action
from localpool.tools.query import print_version
from localpool.tools.queue_tool import condor_history, condor_q
from localpool.tools.status_tool import condor_status


def run(
    argv: Sequence[str], store: Store, caller: Account, env: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """Run one command for ``caller`` on this pool: (exit code, more for the client).

    Called in the pool process's child for the request, with the caller's
    stdio as ours and the caller's directory as the current one.
    """
    tool = Path(argv[0]).name
    args = list(argv[1:])
    try:
        if not store.exists():
            raise PoolNotFound(store.root)
        if "-version" in args and tool != "condor_q":
            print_version()
            return 0, {}
        if tool == "condor_token_list":  # reads the caller's own files, asks no daemon
            from localpool.security.tokens import condor_token_list

            return condor_token_list(args, caller, env), {}
        store, args, named = resolve(tool, args, store, env.get("_CONDOR_SCHEDD_NAME"))
        try:
            caller = authenticate(tool, store, caller, env)
        except AuthError as err:
            from localpool.schedd.schedds import address, name_of, refused

            config = store.config()
            where = address(config, store.schedd)
            sys.stderr.write(refused(tool, name_of(store, config), where, str(err), named))
            return 1, {}
        if tool == "condor_token_fetch":
            from localpool.security.tokens import condor_token_fetch

            return condor_token_fetch(args, store, caller, env), {}
        if tool == "condor_q":
            return condor_q(args, store, caller), {}
        if tool == "condor_history":
            return condor_history(args, store), {}
        if tool in ACTIONS:
            return job_action(tool, args, store, caller), {}
        if tool == "condor_submit":
            from localpool.submit.tool import condor_submit

            return condor_submit(args, store, caller, env)
        if tool == "condor_submit_dag":
            from localpool.submit.dag_tool import condor_submit_dag

            return condor_submit_dag(args, store, caller, env)
        if tool == "condor_status":
            return condor_status(args, store), {}
        if tool == "condor_qedit":
            from localpool.tools.qedit import condor_qedit

            return condor_qedit(args, store, caller), {}
    except Usage as err:
        sys.stderr.write(f"{err}\n")
        return 1, {}
    except PoolNotFound as err:
        sys.stderr.write(f"ERROR: {err}\n")
        return 1, {}
    except ScheddError as err:
        sys.stderr.write(str(err))
        return 1, {}
    except BrokenPipeError:
        return 1, {}
    sys.stderr.write(f"localpool: {tool} is not a command this pool provides\n")
    return 1, {}
