"""Loads the galera-recovery program as a module, from the overlay (tests run the file the nodes run)."""
import importlib.machinery
import importlib.util
import os
import sys

# No __pycache__ beside the overlay: the overlay loader refuses files nobody declared.
sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "..", "..", "..", "overlays", "galera", "usr", "local", "lib", "netroot", "galera-recovery")


def load():
    loader = importlib.machinery.SourceFileLoader("galera_recovery", os.path.normpath(PROGRAM))
    spec = importlib.util.spec_from_loader("galera_recovery", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def config(names, policy="majority", bootstrap=None, wait_for_all=120, survivor_after=600):
    """A cluster's recovery settings as /etc/netroot/galera-recovery.json holds them (less the key)."""
    return {
        "node": names[0],
        "cluster": "k3s_cluster",
        "servers": [{"name": n, "ip": f"192.0.2.{i + 11}"} for i, n in enumerate(names)],
        "names": list(names),
        "bootstrapNode": bootstrap or names[0],
        "port": 4570,
        "policy": policy,
        "survivorAfter": survivor_after,
        "waitForAll": wait_for_all,
        "attemptSeconds": 600,
        "key": "k" * 48,
    }
