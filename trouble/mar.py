"""Reading a .mar archive (a zip file), with a damaged copy named as damaged: by the server, the
batch CLI, evaluation, archiving again and fine-tuning alike."""
from __future__ import annotations

import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

ZIP_START = b"PK\x03\x04"  # a zip file's first bytes: a file that has them but no end was cut off
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError)  # a member's CRC, its compression, a cut in it


def check_mar(path) -> None:
    """ValueError when `path` is no readable zip file: cut off (a copy that did not finish), or not
    an archive at all. A missing file is the caller's to name."""
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as file:
        start = file.read(len(ZIP_START))
    if start == ZIP_START:
        raise ValueError(f"{path} is damaged: it is cut off (a copy or download that did not finish): copy it "
                         f"again, or rebuild it with `make archive`")
    raise ValueError(f"{path} is not a .mar archive (a zip file)")


@contextmanager
def opened_mar(path):
    """The archive as a zipfile.ZipFile; ValueError naming a damaged one, when opened or read."""
    check_mar(path)
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except DAMAGED as error:
        raise ValueError(f"{path} is damaged ({error}): copy it again, or rebuild it with `make archive`") from None


def extract_mar(path, folder: Path) -> None:
    """Unpack the archive into `folder`; ValueError naming a damaged one, or a zip that is no model
    archive (without model-config.yaml a reader named the file missing in a temporary copy)."""
    with opened_mar(path) as archive:
        if "model-config.yaml" not in archive.namelist():
            raise ValueError(f"{path} holds no model-config.yaml: it is not a model archive made by train.archive")
        archive.extractall(folder)


def read_member(path, name: str) -> bytes:
    """One file of the archive; ValueError naming a damaged archive, KeyError when it has no `name`."""
    with opened_mar(path) as archive:
        return archive.read(name)
