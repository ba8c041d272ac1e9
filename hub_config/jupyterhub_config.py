# Example jupyterhub_config.py for CondorSpawner on an HTCondor access point.
# Copy it next to your JupyterHub, adapt the lines after configure(c).
import hub_config

c = get_config()  # noqa: F821 (JupyterHub provides it)

# The site file: $CONDORSPAWNER_SITE, else /etc/condorspawner/site.toml.
site = hub_config.configure(c)

# Who may log in: any JupyterHub authenticator works (PAM, OAuth, LDAP, ...).
c.JupyterHub.authenticator_class = "pam"

# The Python on the execute points that has condorspawner and jupyterhub installed.
c.CondorSpawner.job_python = "/cvmfs/sw.example.org/jupyter/bin/python"

# Presets shown in the form (optional).
c.CondorSpawner.profile_list = [
    {
        "display_name": "Small: 1 CPU, 2GB",
        "slug": "small",
        "default": True,
        "user_options": {"cpus": 1, "memory": "2GB"},
    },
    {
        "display_name": "Analysis: 8 CPUs, 16GB, Rocky Linux 9",
        "slug": "analysis",
        "user_options": {"cpus": 8, "memory": "16GB"},
        "allowed_containers": ["Rocky9"],
    },
]

# Keep notebook servers running when the hub restarts: the spawner re-attaches.
c.JupyterHub.cleanup_servers = False
