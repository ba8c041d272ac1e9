"""Record what the real HTCondor prints, as a case of ``tests/data/htcondor/cases``.

When localpool and the real pool disagree, the real one is right: record the case,
then hold localpool to it (``tests.harness.case(name)``). The recorder starts a real
pool (``CONDORSPAWNER_HTCONDOR``, as the ``htcondor`` tier does), makes a throwaway
account, optionally submits a description as that account and waits for the job to
run, then runs the command as that account in its home and stores ``cmd``, ``stdout``,
``stderr`` and ``rc`` with the machine's paths replaced by the placeholders the other
cases use (``<SUBMIT_DIR>``, ``<LOCAL_DIR>``, ``<RELEASE_DIR>``, ``<TMP>``).

    python -m tests.record ssh_held --submit sleep.sub --hold -- condor_ssh_to_job {job} true
    python -m tests.record q_held_by_root --submit sleep.sub --hold -- condor_q -af HoldReason

``{job}`` in the command is the submitted job's id. Run as root.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tempfile
from pathlib import Path

from tests.harness import REFERENCE, UnixUsers
from tests.realpool import HOW_TO_RUN, RealPool, release_dir


def placeholders(text: str, pool: RealPool, home: Path, user: str) -> str:
    """The recording machine's paths as the other cases name them; the account is alice."""
    text = text.replace(user, "alice")
    for path, name in (
        (home, "<SUBMIT_DIR>"),
        (pool.local, "<LOCAL_DIR>"),
        (pool.release, "<RELEASE_DIR>"),
        (pool.bin, "<RELEASE_DIR>/bin"),
    ):
        text = text.replace(str(path), name)
    return re.sub(r"/tmp(?=/)", "<TMP>", text)


def record(
    pool: RealPool,
    user: str,
    name: str,
    argv: list[str],
    *,
    job: str = "",
    as_root: bool = False,
    into: Path = REFERENCE / "cases",
) -> Path:
    """Run ``argv`` as ``user`` (or root) in their home and write the case ``name``."""
    argv = [word.replace("{job}", job) for word in argv]
    result = pool.run(*argv, user=None if as_root else user, cwd=pool.home(user), timeout=120)
    home = pool.home(user)
    folder = into / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cmd").write_text(shlex.join(argv) + "\n")
    (folder / "stdout").write_text(placeholders(result.stdout, pool, home, user))
    (folder / "stderr").write_text(placeholders(result.stderr, pool, home, user))
    (folder / "rc").write_text(f"{result.returncode}\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.record", description=__doc__)
    parser.add_argument("name", help="the case's folder name (cases/NAME)")
    parser.add_argument("--submit", type=Path, help="a description to submit first")
    parser.add_argument(
        "--hold", action="store_true", help="hold the submitted job first (as root, an admin)"
    )
    parser.add_argument("--as-root", action="store_true", help="run the command as root")
    parser.add_argument("--into", type=Path, default=REFERENCE / "cases")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not command or not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        parser.error("give a case name (letters, digits, _ . -) and -- COMMAND ...")
    release = release_dir()
    if release is None:
        print(HOW_TO_RUN, file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="condorspawner-record-"))
    base.chmod(0o755)
    (base / "homes").mkdir(mode=0o755)
    users = UnixUsers(base / "homes")
    pool = RealPool(base, release)
    pool.start()
    try:
        user = users("rec")
        job = ""
        if args.submit:
            job = pool.submit(args.submit.read_text(), user=user)
            pool.wait_for(job, lambda ad: ad["JobStatus"] in (2, 4, 5), timeout=60)
            if args.hold:
                pool.run("condor_hold", job)
                pool.wait_for(job, lambda ad: ad["JobStatus"] == 5)
        folder = record(
            pool, user, args.name, command, job=job, as_root=args.as_root, into=args.into
        )
        print(f"recorded {folder}")
    finally:
        pool.stop()
        users.remove_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
