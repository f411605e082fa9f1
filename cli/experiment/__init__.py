"""Experiments: a spec, a local cluster of real daemons, one workload, the results directory."""
