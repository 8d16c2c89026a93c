"""Training side of the pipeline: data import, training, evaluation, archiving."""

from pathlib import Path

from trouble.output_paths import write_problem

REPO = Path(__file__).resolve().parent.parent  # the repository: commands run from here, and paths recorded in it


def file_in_place_of_folder(flag: str, path, what: str = "a folder") -> str | None:
    """The message for an output folder option that names an existing file, or that cannot be
    written (trouble.output_paths), else None.

    Checked before any work starts, so a long run does not fail at its last step."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file: give {what}"
    problem = write_problem(path)
    return f"{flag} {path}: {problem}" if problem else None
