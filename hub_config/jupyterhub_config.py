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

# Who never gets a notebook job (root is always refused): accounts below this uid
# and these names. The site file's pool.run_as decides how the hub acts as a user.
c.CondorSpawner.min_uid = 1000
c.CondorSpawner.denied_users = ["root", "condor", "nobody", "daemon", "bin", "sys", "sshd"]
# How long stop() waits for a job's work directory to come back (the job is never
# removed before), and how long a job may be in neither queue nor history.
c.CondorSpawner.stop_timeout = 60
c.CondorSpawner.unknown_timeout = 600
