"""The trust model: what the server loads (the .mar we built: tensors only), and what it receives
(uploads: kept in memory, never written to disk, refused above the size limit).

The app's own limits and temporary files are tested in tests/test_app.py and tests/test_space_upload.py.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
import torch
from PIL import Image

from tests.conftest import ACNE04_PHOTOS, REPO, start_torchserve, stop_torchserve, wait_for_model, worker_state
from trouble.inference import load_mmdet_model
from trouble.settings import MODEL_CONFIG_FILE, ModelSettings

DEMO_MAR = REPO / "model_store" / "trouble.mar"


def mars_to_check(smoke_mar) -> list[Path]:
    """The .mar the suite builds, and the committed demo model when there is one."""
    return [smoke_mar] + ([DEMO_MAR] if DEMO_MAR.is_file() else [])


def test_the_mar_weights_load_as_plain_tensors(smoke_mar, tmp_path):
    for mar in mars_to_check(smoke_mar):
        with zipfile.ZipFile(mar) as archive:
            archive.extract("model.pth", tmp_path / mar.parent.name)
        checkpoint = torch.load(tmp_path / mar.parent.name / "model.pth", map_location="cpu", weights_only=True)
        assert set(checkpoint) == {"state_dict"}, mar
        state = checkpoint["state_dict"]
        assert len(state) > 10 and all(isinstance(value, torch.Tensor) for value in state.values()), mar


class RunsCodeWhenUnpickled:
    """What a hostile checkpoint carries: unpickling it calls os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_checkpoint_that_carries_code_is_refused_not_run(smoke_mar, tmp_path):
    model_dir = tmp_path / "model"
    with zipfile.ZipFile(smoke_mar) as archive:
        archive.extractall(model_dir)
    witness = tmp_path / "the-checkpoint-ran-code"
    torch.save({"state_dict": RunsCodeWhenUnpickled(f"touch {witness}")}, model_dir / "model.pth")
    settings = ModelSettings.from_yaml(model_dir / MODEL_CONFIG_FILE)

    with pytest.raises((pickle.UnpicklingError, ValueError)):
        load_mmdet_model(model_dir, settings, "cpu")
    assert not witness.exists()

    # The file really is hostile: a full unpickle, as torch.load(weights_only=False) does, runs the command.
    torch.load(model_dir / "model.pth", map_location="cpu", weights_only=False)
    assert witness.exists()


def jpeg_with_marker(marker: bytes) -> bytes:
    """A real photo with a unique marker in its JPEG comment: any copy of the upload on disk holds it."""
    buffer = io.BytesIO()
    Image.open(ACNE04_PHOTOS[1]).save(buffer, "JPEG", quality=90, comment=marker)
    return buffer.getvalue()


def files_holding(marker: bytes, roots: list[Path], since: float) -> list[Path]:
    """Files under roots, changed at or after `since`, whose bytes contain marker."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                try:
                    if path.is_symlink() or path.stat().st_mtime < since - 1 or path.stat().st_size > 200_000_000:
                        continue
                    if marker in path.read_bytes():
                        found.append(path)
                except OSError:  # another program's file, gone or unreadable: not ours
                    continue
    return found


def test_uploads_are_never_written_to_disk(smoke_mar, tmp_path, monkeypatch):
    # The server's temp folders (Python's TMPDIR and Java's TEMP) inside this test's folder, so that
    # every file TorchServe writes for a request (the unpacked model too) lands where we look.
    java_temp = tmp_path / "ts" / "java_tmp"
    java_temp.mkdir(parents=True)
    monkeypatch.setenv("TEMP", str(java_temp))
    server = start_torchserve(smoke_mar.parent, tmp_path / "ts")
    try:
        wait_for_model(server)
        assert list(java_temp.glob("models/*/model.pth")), "the unpacked model is not under TEMP: the scan would miss it"
        marker = f"upload-{uuid.uuid4().hex}".encode()
        photo = jpeg_with_marker(marker)
        files_before = set((tmp_path / "ts").rglob("*"))
        since = time.time()
        url = f"{server['inference']}/predictions/trouble"
        assert requests.post(url, data=photo, timeout=120).status_code == 200
        assert requests.post(url, files={"data": ("face.jpg", photo, "image/jpeg")}, data={"threshold": "0.5"},
                             timeout=120).status_code == 200
        # A multipart upload of several MB (a phone photo's size), where a server might spool to disk.
        large = photo + os.urandom(4_000_000)
        assert requests.post(url, files={"data": ("face.jpg", large, "image/jpeg")}, timeout=120).status_code == 200
        # No copy of the upload in anything TorchServe wrote (logs, temp folders, the unpacked model)
        # or in the system temp folder, and no new file at all in the server's folders (a decoded or
        # re-encoded copy would not hold the marker).
        roots = [tmp_path / "ts", Path(tempfile.gettempdir())]
        assert files_holding(marker, roots, since) == []
        assert set((tmp_path / "ts").rglob("*")) - files_before == set()
    finally:
        stop_torchserve(server)


def test_a_request_over_the_size_limit_gets_413_and_the_worker_stays_up(torchserve):
    config = dict(line.split("=", 1) for line in (REPO / "config.properties").read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    limit = int(config["max_request_size"])
    before = worker_state(torchserve)
    body = bytes(limit + 4 * 2 ** 20)  # zeros, a little over the limit (64 MiB + 4 MiB)
    reply = requests.post(f"{torchserve['inference']}/predictions/trouble", data=body, timeout=120)
    assert reply.status_code == 413
    assert worker_state(torchserve) == before  # refused by the front end: the worker never saw it
    reply = requests.post(f"{torchserve['inference']}/predictions/trouble", data=ACNE04_PHOTOS[0].read_bytes(),
                          timeout=120)
    assert reply.status_code == 200
