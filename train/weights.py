"""Find a starting checkpoint: a local file, a URL (cached like torch.hub), the Hugging Face Hub, or
a model archive (.mar) made by train.archive, e.g. the demo model, to fine-tune it on other photos.

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


# What makes two configs' models the same network (weights, init and loss settings aside): a
# .mar's weights fit a training config only where these agree.
ARCHITECTURE_KEYS = {"backbone": ("type", "depth", "groups", "base_width", "base_channels", "model_name"),
                     "neck": ("type", "in_channels", "out_channels", "start_level", "num_outs"),
                     "bbox_head": ("feat_channels", "stacked_convs")}


def resolve_weights(spec: str, timeout_s: float = 30.0) -> str:
    """Return a local path for `spec`: a path, an http(s) URL, or hf://owner/repo/path/in/repo.pth."""
    if spec.startswith(HF_PREFIX):
        return _from_hub(spec[len(HF_PREFIX):])
    if urlparse(spec).scheme in ("http", "https"):
        return _from_url(spec, timeout_s)
    if "://" in spec:  # htp://, ftp://, s3://: not a path either
        raise WeightsUnavailable(f"{spec} is neither an http(s):// or hf:// address nor a local file: give "
                                 f"https://.../file.pth, hf://owner/repo/file.pth, or a path")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"checkpoint file {spec} not found")
    # Found now, not by mmengine once training has started (a .mar is checked where it is opened).
    if path.suffix != ".mar" and not looks_like_a_checkpoint(path):
        raise WeightsUnavailable(f"{spec} is not a PyTorch checkpoint (empty, cut short, or another kind of file)")
    return str(path)


def looks_like_a_checkpoint(path: Path) -> bool:
    """torch.save writes a zip file (or, before torch 1.6, a pickle, which starts with 0x80)."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


def weights_from_archive(mar: Path) -> str:
    """The model.pth inside a .mar made by train.archive, extracted into the torch hub cache."""
    import hashlib

    import torch.hub

    data = _read_from_archive(mar, "model.pth")
    # Named by content, so that a re-archived .mar of the same name is not served from the cache.
    extracted = Path(torch.hub.get_dir()) / "checkpoints" / f"{mar.stem}-{hashlib.sha256(data).hexdigest()[:12]}.pth"
    if not extracted.is_file():
        extracted.parent.mkdir(parents=True, exist_ok=True)
        partial = extracted.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(extracted)
    return str(extracted)


def _read_from_archive(mar: Path, name: str) -> bytes:
    from trouble.mar import read_member

    try:
        return read_member(mar, name)
    except ValueError as error:  # not a zip file, or a damaged one
        raise WeightsUnavailable(str(error)) from None
    except KeyError:
        raise WeightsUnavailable(f"{mar} is not a model archive made by train.archive (no {name} inside)") from None


def archived_settings(mar: Path) -> dict:
    """The `trouble` block of a .mar's model-config.yaml: classes, provenance, how it was trained."""
    import yaml

    settings = yaml.safe_load(_read_from_archive(mar, "model-config.yaml")) or {}
    return settings.get("trouble") or {}


def architecture_differences(mar: Path, model_cfg) -> list[str]:
    """Where the network archived in `mar` differs from `model_cfg` (an mmdet model config); [] if none."""
    from mmengine.config import Config

    archived = Config.fromstring(_read_from_archive(mar, "config.py").decode(), ".py").model
    differences = []
    for part, keys in ARCHITECTURE_KEYS.items():
        for key in keys:
            ours, theirs = model_cfg.get(part, {}).get(key), archived.get(part, {}).get(key)
            if ours != theirs:
                differences.append(f"{part}.{key}: the archive has {theirs!r}, the config {ours!r}")
    return differences


def _from_url(url: str, timeout_s: float) -> str:
    import torch.hub

    name = os.path.basename(urlparse(url).path)
    if not name:  # the cache file would be the cache folder itself
        raise WeightsUnavailable(f"{url} names no file: give the checkpoint's own address, ending in its file name")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
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
