"""File transfer: the job's input into its scratch directory, its output back.

As HTCondor's file transfer does for a job with ``should_transfer_files =
YES``: the executable (unless ``transfer_executable = false``) and
``transfer_input_files`` in (``dir/`` transfers a directory's contents);
out go stdout and stderr to ``output``/``error``, then
``transfer_output_files`` or else every new top-level file. The starter
calls these as the job's owner, so every copy is theirs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localpool.ads import Ad
from localpool.schedd import eventlog

INTERNAL_FILES = {".job.ad", ".machine.ad", ".chirp.config", "_condor_stdout", "_condor_stderr"}


def file_list(value: str) -> list[str]:
    """The entries of a comma-separated file list."""
    return [e.strip() for e in value.split(",") if e.strip()]


def copy(source: Path, dest: Path) -> None:
    """Copy a file or a directory tree (call as the job's owner: the copy is theirs)."""
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, dest)


def transfer_in(ad: Ad, iwd: Path, scratch: Path) -> None:
    """The executable and ``transfer_input_files`` (relative to ``iwd``) into ``scratch``."""
    if ad.get("TransferExecutable", True):
        exe = Path(ad["Cmd"])
        copy(exe, scratch / exe.name)
    for entry in file_list(ad.get("TransferInput", "")):
        source = Path(entry) if os.path.isabs(entry) else iwd / entry
        name = Path(entry.rstrip("/")).name
        if entry.endswith("/") and source.is_dir():  # "dir/" transfers the contents
            for child in source.iterdir():
                copy(child, scratch / child.name)
        else:
            copy(source, scratch / name)


def transfer_out(ad: Ad, scratch: Path, target: Path) -> None:
    """stdout, stderr and the output files from ``scratch`` into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    eventlog.transfer(ad, "Started transferring output files")
    for attr, name in (("Out", "_condor_stdout"), ("Err", "_condor_stderr")):
        dest = ad.get(attr, "/dev/null")
        if dest != "/dev/null":
            dest_path = Path(dest) if os.path.isabs(dest) else target / dest
            dest_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scratch / name, dest_path)
    wanted = ad.get("TransferOutput")
    if wanted is not None:
        names = file_list(wanted)
    else:
        exe_name = Path(ad["Cmd"]).name
        inputs = {Path(e.rstrip("/")).name for e in file_list(ad.get("TransferInput", ""))}
        names = [
            p.name
            for p in scratch.iterdir()
            if p.is_file() and p.name not in INTERNAL_FILES | inputs | {exe_name}
        ]
    for name in names:
        source = scratch / name
        if not source.exists():
            continue
        copy(source, target / Path(name).name)
    eventlog.transfer(ad, "Finished transferring output files")
