"""Wait until TorchServe's `trouble` model has a READY worker (used by `make serve`).

Reads the management address from config.properties; exits 1 with the log's last lines if the
model is not ready in time, so `make serve` never reports success over a crash-looping worker.
"""
import sys
import time
from pathlib import Path

import requests


def management_address(config_path: str = "config.properties") -> str:
    for line in Path(config_path).read_text().splitlines():
        if line.strip().startswith("management_address="):
            return line.split("=", 1)[1].strip()
    return "http://127.0.0.1:8081"


def main(timeout_s: float = 180) -> int:
    url = f"{management_address()}/models/trouble"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            reply = requests.get(url, timeout=5)
            workers = reply.json()[0]["workers"] if reply.status_code == 200 else []
            if workers and all(w["status"] == "READY" for w in workers):
                print(f"TorchServe is serving 'trouble' ({len(workers)} worker(s) ready): "
                      f"POST photos to {url.replace(':8081', ':8080').replace('/models/', '/predictions/')}")
                return 0
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        time.sleep(1)
    log = Path("logs/model_log.log")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else "(no logs/model_log.log)"
    print(f"error: the 'trouble' model did not become ready in {timeout_s:.0f} s. Last log lines:\n{tail}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
