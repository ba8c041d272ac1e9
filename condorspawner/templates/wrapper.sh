#!/bin/bash
# condorspawner job wrapper: batch jobs, notebooks and interactive shells get
# the same environment.
#  1. a login-shell environment (/etc/profile, ~/.bash_profile, ...), as on a
#     login node;
#  2. HTCondor's per-job values kept through it: the thread-count variables
#     from the job's RequestCpus, TMPDIR and friends in the scratch directory;
#  3. exec of the payload given as arguments.
if [ -z "${CONDORSPAWNER_WRAPPED:-}" ]; then
    export CONDORSPAWNER_WRAPPED=1
    for var in TMPDIR TMP TEMP; do
        export "CONDORSPAWNER_KEEP_$var=${!var:-}"
    done
    export CONDORSPAWNER_KEEP_THREADS="${OMP_NUM_THREADS:-}"
    exec /bin/bash --login "$0" "$@"
fi
unset CONDORSPAWNER_WRAPPED

cpus=""
if [ -n "${_CONDOR_JOB_AD:-}" ] && [ -r "$_CONDOR_JOB_AD" ]; then
    cpus=$(sed -n 's/^RequestCpus = \([0-9][0-9]*\)$/\1/p' "$_CONDOR_JOB_AD" | head -n 1)
fi
cpus="${cpus:-${CONDORSPAWNER_KEEP_THREADS:-1}}"
for var in {{ thread_variables | sh }}; do
    export "$var=$cpus"
done
for var in TMPDIR TMP TEMP; do
    keep="CONDORSPAWNER_KEEP_$var"
    if [ -n "${!keep}" ]; then export "$var=${!keep}"; fi
    unset "$keep"
done
unset CONDORSPAWNER_KEEP_THREADS
# Login profiles may change directory: the job runs in its scratch directory.
cd "${_CONDOR_SCRATCH_DIR:-$PWD}" || exit 1

# Directories condorsub packed (-d NAME): unpacked here, named in CONDORSUB_DIR_<NAME>.
for name in ${CONDORSUB_DIRS:-}; do
    tar -xzf "$name.dir.tar.gz" && rm -f "$name.dir.tar.gz" || exit 1
    var=$(printf '%s' "$name" | tr -c 'A-Za-z0-9_' '_' | tr 'a-z' 'A-Z')
    export "CONDORSUB_DIR_$var=$PWD/$name"
done

if [ "$#" -eq 0 ]; then
    echo "condorspawner wrapper: no command to run" >&2
    exit 2
fi
exec "$@"
