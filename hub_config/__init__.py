"""Turning the site file into JupyterHub configuration, and the admin snippets."""
