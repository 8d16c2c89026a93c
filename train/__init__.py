"""Training side of the pipeline: data import, training, evaluation, archiving."""

import os
from pathlib import Path


def file_in_place_of_folder(flag: str, path, what: str = "a folder") -> str | None:
    """The message for an output folder option that names an existing file, else None.

    Checked before any work starts, so a long run does not fail at its last step."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file: give {what}"
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:  # found only when the folder is made, at the end of the work
        return f"{flag} {path} cannot be made: {blocking} is a file"
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not os.access(existing, os.W_OK | os.X_OK):  # likewise: a PermissionError after the whole run
        return f"{flag} {path}: no permission to write in {existing}"
    return None
