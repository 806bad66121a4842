"""The cert-rollout commands, one module per command group, each with ``register(app)``.

Operator commands (AWS; the package's base dependencies): targets, check, history, renew, status, nodes.
Local-cloud commands (the ``[local]`` extra): demo, local run, invoke, bench; each imports
cert_rollout.localcloud only when it runs, after common.require_local.
"""
