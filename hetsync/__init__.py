"""hetsync: parameter-server CNN training for heterogeneous clusters on Ray.

    import hetsync
    result = hetsync.train(model="lenet5", dataset="mnist-10k", data_dir="...", workers=4,
                           sync="ssp", staleness=3, iterations=3000)
    result.summary["final_val_accuracy"], result.model
"""

import os
import sys

# Ray's token authentication on for every Ray process this program starts or joins. Ray reads
# the mode when it is imported, so this must precede the first import of Ray; if the caller
# imported Ray already, setting it now would split the driver from the cluster it starts, and
# Ray's own default (on, for local instances) applies instead.
if "ray" not in sys.modules:
    os.environ.setdefault("RAY_AUTH_MODE", "token")

from hetsync.config import TrainConfig  # noqa: E402
from hetsync.errors import ClusterError, ConfigError, DataError, HetsyncError  # noqa: E402


def train(config=None, **settings):
    """Train with a TrainConfig, or with keyword arguments named like the CLI flags
    (`hetsync.run.train.train`; imported on first use, so that `import hetsync` stays light)."""
    from hetsync.run.train import train as _train

    return _train(config, **settings)


def __getattr__(name: str):
    if name == "TrainResult":  # what train() returns, imported with it
        from hetsync.run.train import TrainResult

        return TrainResult
    raise AttributeError(f"module 'hetsync' has no attribute {name!r}")


__all__ = ["TrainConfig", "TrainResult", "train", "HetsyncError", "ConfigError", "DataError",
           "ClusterError"]
__version__ = "0.1.0"
