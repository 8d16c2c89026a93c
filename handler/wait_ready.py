"""Wait until TorchServe's `trouble` model has a READY worker (used by `make serve`).

Reads the addresses from the config TorchServe was started with (TS_CONFIG_FILE, else
./config.properties) and, when token authorisation is on, the management key from the
key_file.json TorchServe wrote in this folder. Exits 1 with the log's last lines if the model is
not ready in time, so `make serve` never reports success over a crash-looping worker.
"""
import json
import os
import sys
import time
from pathlib import Path

import requests


def config_value(key: str, default: str, config_path: str | None = None) -> str:
    path = Path(config_path or os.environ.get("TS_CONFIG_FILE") or "config.properties")
    if path.is_file():
        for line in path.read_text(encoding="latin-1").splitlines():  # Java reads .properties as Latin-1
            if line.strip().startswith(f"{key}="):
                return line.split("=", 1)[1].strip()
    return default


def management_headers(key_file: str = "key_file.json") -> dict:
    """The management key's Authorization header, where TorchServe wrote one (token auth on)."""
    try:
        key = json.loads(Path(key_file).read_text())["management"]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {"Authorization": f"Bearer {key}"}


def main(timeout_s: float = 180) -> int:
    url = f"{config_value('management_address', 'http://127.0.0.1:8081')}/models/trouble"
    predictions = f"{config_value('inference_address', 'http://127.0.0.1:8080')}/predictions/trouble"
    deadline = time.time() + timeout_s
    refused = None
    while time.time() < deadline:
        try:
            # Read each time: TorchServe writes key_file.json as it starts.
            reply = requests.get(url, headers=management_headers(), timeout=5)
            refused = reply.text[:200] if reply.status_code in (400, 401, 403) else None
            workers = reply.json()[0]["workers"] if reply.status_code == 200 else []
            if workers and all(w["status"] == "READY" for w in workers):
                print(f"TorchServe is serving 'trouble' ({len(workers)} worker(s) ready): POST photos to {predictions}")
                return 0
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        time.sleep(1)
    if refused:
        print(f"error: TorchServe refused to say whether 'trouble' is ready ({refused}); with token "
              f"authorisation on, run this from the folder holding its key_file.json", file=sys.stderr)
        return 1
    log = Path("logs/model_log.log")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else "(no logs/model_log.log)"
    print(f"error: the 'trouble' model did not become ready in {timeout_s:.0f} s. Last log lines:\n{tail}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
