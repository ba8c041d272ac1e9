"""localpool: a one-machine stand-in for an HTCondor pool (tests and the demo only)."""
