"""Wait until TorchServe's `trouble` model has a READY worker (used by `make serve`).

Reads the addresses from the config TorchServe was started with (TS_CONFIG_FILE, else
./config.properties) and, when token authorisation is on, the keys from the key_file.json
TorchServe wrote in this folder. Exits 1 with the log's last lines if the model is not ready in
time, or at once when TorchServe gives up on it (exit code 3: `make serve` then stops that server),
so `make serve` never reports success over a crash-looping worker.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import requests


# TorchServe opens its ports within seconds of starting; its model may take minutes to load.
NO_ANSWER_S = 60


# The exit code when TorchServe gave up on the model: `make serve` then stops that server (only
# then: after the other failures the server may be someone else's, or still loading).
GAVE_UP = 3


class NotReady(Exception):
    """The model did not become ready; the message says why. reason: "gave up" (no worker could load
    the model), "timeout", "no answer" (nothing listens at the address) or "refused" (the key)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def config_value(key: str, default: str, config_path: str | None = None) -> str:
    path = Path(config_path or os.environ.get("TS_CONFIG_FILE") or "config.properties")
    if path.is_file():
        for line in path.read_text(encoding="latin-1").splitlines():  # Java reads .properties as Latin-1
            if line.strip().startswith(f"{key}="):
                return line.split("=", 1)[1].strip()
    return default


def key_header(api: str, key_file: str = "key_file.json") -> dict:
    """The Authorization header for TorchServe's `api` ("management" or "inference"), where
    TorchServe wrote keys (token authorisation on); none otherwise."""
    try:
        key = json.loads(Path(key_file).read_text())[api]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {"Authorization": f"Bearer {key}"}


def gave_up(inference_url: str) -> bool:
    """Whether TorchServe has given up on the model: /ping turns 500 "Unhealthy" once no worker could
    load it within the .mar's maxRetryTimeoutInSec (60 s), and stays "Healthy" while one starts."""
    try:
        reply = requests.get(f"{inference_url}/ping", headers=key_header("inference"), timeout=5)
    except requests.RequestException:
        return False
    return reply.status_code == 500 and "Unhealthy" in reply.text


def wait_until_ready(management_url: str, inference_url: str, timeout_s: float = 180,
                     no_answer_s: float = NO_ANSWER_S) -> dict:
    """The management API's description of `trouble` once every worker is READY. NotReady when
    TorchServe gives up on the model, or refuses to say (a key it does not accept), or nothing
    answers for no_answer_s, or after timeout_s."""
    start = time.time()
    refused, workers, answered = None, [], False
    while time.time() < start + timeout_s:
        try:
            # Read the key each time: TorchServe writes key_file.json as it starts.
            reply = requests.get(f"{management_url}/models/trouble", headers=key_header("management"), timeout=5)
            answered = True
            refused = reply.text[:200] if reply.status_code in (400, 401, 403) else None
            description = reply.json()[0] if reply.status_code == 200 else None
            workers = [w["status"] for w in description["workers"]] if description else []
            if workers and all(status == "READY" for status in workers):
                return description
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError):
            pass
        if not answered and time.time() > start + no_answer_s:
            raise NotReady(f"nothing answers at {management_url} after {no_answer_s:.0f} s: no TorchServe runs with "
                           f"this config. Where `torchserve --start` said 'already running', the server running "
                           f"is another one, started with another config (TorchServe keeps one pid file per "
                           f"TMPDIR); logs/torchserve.out and logs/ts_log.log say why a server started "
                           f"here did not come up", reason="no answer")
        if gave_up(inference_url):
            raise NotReady("TorchServe gave up on the 'trouble' model: no worker could load it (/ping says "
                           "Unhealthy)", reason="gave up")
        time.sleep(1)
    if refused:
        raise NotReady(f"TorchServe refused to say whether 'trouble' is ready ({refused}); with token "
                       f"authorisation on, run this from the folder holding its key_file.json", reason="refused")
    raise NotReady(f"the 'trouble' model did not become ready in {timeout_s:.0f} s (its workers: {workers or 'none'})",
                   reason="timeout")


def main(argv=None) -> int:
    # Options only so that --help answers (it waited a minute for TorchServe, then failed).
    parser = argparse.ArgumentParser(prog="python -m handler.wait_ready", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the model (default 180)")
    timeout_s = parser.parse_args(argv).timeout
    if not 0 < timeout_s < math.inf:  # NaN too: it asked nothing, then said the model was not ready in time
        parser.error(f"--timeout must be a number of seconds above 0, got {timeout_s}")
    named = os.environ.get("TS_CONFIG_FILE")
    if named and not Path(named).is_file():  # the default ports might be another TorchServe's
        parser.error(f"TS_CONFIG_FILE {named} is not a file: point it at the config.properties TorchServe runs with")
    management = config_value("management_address", "http://127.0.0.1:8081")
    inference = config_value("inference_address", "http://127.0.0.1:8080")
    try:
        workers = wait_until_ready(management, inference, timeout_s)["workers"]
    except NotReady as error:
        if error.reason not in ("gave up", "timeout"):  # the model log is not about this: old, or another's
            print(f"error: {error}", file=sys.stderr)
            return 1
        log = Path(os.environ.get("LOG_LOCATION") or "logs") / "model_log.log"  # where TorchServe writes it
        tail = ("\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file()
                else f"(no {log})")
        print(f"error: {error}. Last lines of {log}:\n{tail}", file=sys.stderr)
        return GAVE_UP if error.reason == "gave up" else 1
    print(f"TorchServe is serving 'trouble' ({len(workers)} worker(s) ready): POST photos to "
          f"{inference}/predictions/trouble")
    return 0


if __name__ == "__main__":
    sys.exit(main())
