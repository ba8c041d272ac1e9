"""The site file as JupyterHub configuration: ``hub_config.configure(c)``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from condorspawner.site import Site, load_site

REPO = Path(__file__).resolve().parents[1]


def proxy_command() -> list[str] | None:
    """configurable-http-proxy: from this checkout's node_modules, else from PATH."""
    local = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return [str(local)]
    found = shutil.which("configurable-http-proxy")
    return [found] if found else None


def configure(c: Any, site_file: str | None = None) -> Site:
    """Point JupyterHub at CondorSpawner with this site's settings; returns the site.

    Everything set here is a default: lines after ``configure(c)`` in
    jupyterhub_config.py override it.
    """
    site = load_site(site_file)
    c.JupyterHub.spawner_class = "condor"
    if site.source != "built-in defaults":
        c.CondorSpawner.site_file = site.source
    # our own idle limit (notebook.start_timeout) ends a queued spawn first, with its reason
    c.CondorSpawner.start_timeout = site.notebook.start_timeout + 120
    c.CondorSpawner.http_timeout = 120
    # a notebook job may wait in the queue: answer the spawn request at once and show
    # the progress page instead of blocking the browser
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
    command = proxy_command()
    if command:
        c.ConfigurableHTTPProxy.command = command
    return site
