"""Training side of the pipeline: data import, training, evaluation, archiving."""

from pathlib import Path


def file_in_place_of_folder(flag: str, path, what: str = "a folder") -> str | None:
    """The message for an output folder option that names an existing file, else None.

    Checked before any work starts, so a long run does not fail at its last step."""
    if Path(path).exists() and not Path(path).is_dir():
        return f"{flag} {path} is a file: give {what}"
    return None
