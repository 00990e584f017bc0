"""What runs around the training ranks, in data-flow order.

cases (pure specs and plans) -> prepare (what a plan needs on disk) -> launch / procs / progress -> logparse ->
metrics / stats -> compare -> baselines / runs / runner; determinism and drift on top. Nothing here imports
paddle at module level.
"""
