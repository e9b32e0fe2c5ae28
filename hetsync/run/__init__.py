"""A training run: `train()` and the driver loop (`train.py`), acting on plain policies
that know no Ray: evaluation, checkpoints, faults and restarts, metrics and the summary."""
