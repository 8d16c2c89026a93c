"""Find a starting checkpoint: a local file, a URL (cached like torch.hub), or the Hugging Face Hub.

Fetching happens here, before training starts, so that an offline machine gets one clear
message instead of a stack trace from deep inside mmengine.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

HF_PREFIX = "hf://"


class WeightsUnavailable(Exception):
    """The checkpoint cannot be had (missing file, no network, unknown repo)."""


def resolve_weights(spec: str, timeout_s: float = 30.0) -> str:
    """Return a local path for `spec`: a path, an http(s) URL, or hf://owner/repo/path/in/repo.pth."""
    if spec.startswith(HF_PREFIX):
        return _from_hub(spec[len(HF_PREFIX):])
    if urlparse(spec).scheme in ("http", "https"):
        return _from_url(spec, timeout_s)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"checkpoint file {spec} not found")
    return str(path)


def _from_url(url: str, timeout_s: float) -> str:
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if cached.is_file():
        return str(cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    except Exception as error:  # network errors come in many types; all mean "not available"
        cached.unlink(missing_ok=True)
        raise WeightsUnavailable(f"could not download {url}: {type(error).__name__}: {error}") from error
    finally:
        socket.setdefaulttimeout(previous)
    return str(cached)


def _from_hub(ref: str) -> str:
    parts = ref.split("/")
    if len(parts) < 3:
        raise WeightsUnavailable(f"hf://{ref}: expected hf://owner/repo/path/to/checkpoint.pth")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as error:  # offline, missing repo or file, auth: all mean "not available"
        raise WeightsUnavailable(f"could not get {filename} from the Hub repo {repo_id}: "
                                 f"{type(error).__name__}: {error}") from error
