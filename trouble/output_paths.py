"""Whether a command may write an output, checked before its work starts.

A run over hundreds of photos, or an hour of training, otherwise finds out at its last step, where a
PermissionError or a file in place of a folder loses what it made. The batch CLI, training,
evaluation, archiving and the benchmarks all ask here.
"""
from __future__ import annotations

import os
from pathlib import Path


def write_problem(path) -> str | None:
    """Why `path` (a file or folder to be made, or replaced) cannot be written, else None: a file
    where one of its folders should be, or no permission to write where it would be made."""
    path = Path(path)
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        return f"{blocking} is a file, so {path} cannot be made"
    nearest = next(place for place in (path, *path.parents) if place.exists())
    if nearest.is_dir() and not os.access(nearest, os.W_OK | os.X_OK):
        return f"no permission to write in {nearest}"
    if not nearest.is_dir() and not os.access(nearest, os.W_OK):
        return f"no permission to write {nearest}"
    return None
