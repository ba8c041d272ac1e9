"""What condor_q, condor_history and condor_status share: options, selection, output.

Their options (``-json``, ``-long``, ``-af``, ``-format``, ``-attributes``,
``-constraint``, ``-allusers``, ``-limit``, ...), which ads the job ids,
clusters and owners on the command line select, and how the ads are printed
in the machine-readable forms (``localpool.ads``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from localpool import ads as adfmt
from localpool.ads import Ad
from localpool.tools.actions import Usage


def job_filter(args: Sequence[str]) -> tuple[set[str], set[int], set[str]]:
    """Job ids (C.P), clusters (C) and owner names among positional arguments."""
    procs, clusters, owners = set(), set(), set()
    for arg in args:
        if arg.replace(".", "", 1).isdigit() and not arg.startswith("."):
            if "." in arg:
                procs.add(arg)
            else:
                clusters.add(int(arg))
        else:
            owners.add(arg)
    return procs, clusters, owners


def selected(ad: Ad, procs: set[str], clusters: set[int], owners: set[str]) -> bool:
    if not (procs or clusters or owners):
        return True
    job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
    return job_id in procs or ad["ClusterId"] in clusters or ad.get("Owner") in owners


def constrained(ads: Iterable[Ad], constraint: str | None) -> list[Ad]:
    if not constraint:
        return list(ads)
    import classad2

    tree = classad2.ExprTree(constraint)  # raises on a bad constraint
    return [
        ad for ad in ads if adfmt.is_true(adfmt.from_classad_value(tree.eval(adfmt.to_classad(ad))))
    ]


def visible(ad: Ad) -> Ad:
    """The job ad without localpool's own bookkeeping attributes."""
    return {k: v for k, v in ad.items() if not k.startswith("Localpool")}


def parse_options(argv: Sequence[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "mode": "table",
        "attributes": [],
        "constraint": None,
        "ids": [],
        "allusers": False,
        "limit": None,
        "nobatch": False,
    }
    i = 0
    while i < len(argv):
        arg = argv[i]
        low = arg.lower()
        if low in ("-json",):
            opts["mode"] = "json"
        elif low in ("-l", "-long"):
            opts["mode"] = "long"
        elif low == "-format":
            if i + 2 >= len(argv):
                raise Usage("Error: -format requires a format and an attribute")
            opts["mode"] = "format"
            opts.setdefault("format", []).append((argv[i + 1], argv[i + 2]))
            i += 2
        elif low in ("-af", "-autoformat"):
            # attributes up to the next option, as condor_q reads them
            opts["mode"] = "af"
            opts["af"] = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                opts["af"].append(argv[i])
        elif low in ("-attributes", "-attrs"):
            i += 1
            opts["attributes"] = [a for a in argv[i].split(",") if a] if i < len(argv) else []
        elif low in ("-constraint", "-const"):
            i += 1
            if i >= len(argv):
                raise Usage(f"Error: {arg} requires another argument")
            opts["constraint"] = argv[i]
        elif low in ("-allusers", "-all"):
            opts["allusers"] = True
        elif low in ("-nobatch", "-nob"):
            opts["nobatch"] = True
        elif low in ("-limit", "-match"):
            i += 1
            if i >= len(argv) or not argv[i].isdigit():
                raise Usage(f"Error: {arg} requires a number")
            opts["limit"] = int(argv[i])
        elif low in ("-name", "-pool"):
            i += 1  # one schedd, one pool: accepted and ignored
        elif low in ("-better-analyze", "-analyze", "-better-analyse", "-analyse"):
            opts["mode"] = "analyze"
        elif low == "-version":
            opts["mode"] = "version"
        elif arg.startswith("-"):
            raise Usage(f"Error: unrecognized option {arg}")
        else:
            opts["ids"].append(arg)
        i += 1
    return opts


def print_ads(ads: list[Ad], opts: dict[str, Any], out: Callable[[str], None]) -> None:
    mode = opts["mode"]
    if mode == "json":
        out(adfmt.format_json(ads, opts["attributes"]))
    elif mode == "long":
        out(adfmt.format_long(ads, opts["attributes"]))
    elif mode == "af":
        out(adfmt.format_autoformat(ads, opts["af"]))
    elif mode == "format":
        out(adfmt.format_printf(ads, opts["format"]))


def print_version() -> None:
    """``-version``: the version lines of the HTCondor localpool stands in for."""
    from localpool.submit.job_ad import PLATFORM, VERSION

    sys.stdout.write(f"{VERSION}\n{PLATFORM}\n")
