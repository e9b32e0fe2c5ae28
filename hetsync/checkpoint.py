"""Saving and loading weights. Files are written atomically and read with
`torch.load(..., weights_only=True)`, so a checkpoint can never execute code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hetsync.errors import HetsyncError


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise HetsyncError(f"checkpoint {path} does not exist") from e
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise HetsyncError(f"checkpoint {path} is corrupt or not a weights file: "
                           f"{str(e).splitlines()[0]}") from e
