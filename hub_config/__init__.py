"""Turning the site file into JupyterHub configuration, the admin snippets, and the demo."""

from hub_config.configure import configure

__all__ = ["configure"]
