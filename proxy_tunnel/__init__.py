"""Port forwarding into HTCondor jobs through condor_ssh_to_job (no JupyterHub here)."""

from proxy_tunnel.relay import SocketRelay
from proxy_tunnel.tunnel import (
    LocalPortTaken,
    Tunnel,
    TunnelError,
    answers_http,
    free_port,
    free_ports,
)

__all__ = [
    "LocalPortTaken",
    "SocketRelay",
    "Tunnel",
    "TunnelError",
    "answers_http",
    "free_port",
    "free_ports",
]
