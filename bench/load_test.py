r"""Load test: N concurrent clients post real photos to a TorchServe of our own on loopback.

    python -m bench.load_test --model model_store/trouble.mar --clients 10,50 --seconds 30 \
        --out bench/results/load_test.json

Starts TorchServe with the repository's config.properties (job queue of 32 per model) on free
ports of 127.0.0.1, then, for each client count, runs that many closed-loop clients (no pause
between requests) for --seconds, and reports throughput, latency percentiles, status codes and
worker restarts (worker pid changes seen through the management API), as a table and as JSON.
--job-queue-size and --batch-size try other settings (a copy of the .mar with another batchSize,
re-archived with the current code).

What counts as a failure. TorchServe answers 503 at once when the model's queue is full: that is
load shedding, not a failure, and those answers are counted and timed separately. A client retries
a 503 after a jittered exponential backoff (0.25 s, 0.5 s, ... at most 4 s) for as long as the
request is younger than --retry-budget (120 s, what a person waiting for a result might accept),
as a well-behaved client of a busy service does. A request FAILS when it never gets a 200: any
other status, a client timeout (--client-timeout per try: a hang), a refused or reset
connection, or a 503 when its retry budget is spent.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.arguments import (at_least, existing_folder, existing_path, list_of,  # noqa: E402
                             output_file, parse_checked, positive_float, run_main, write_results)
# The test suite's helpers: a real TorchServe on free loopback ports with the repo's config.
from tests.conftest import torchserve_serving, wait_for_model  # noqa: E402
from trouble.mar import check_mar  # noqa: E402
from train.archive import rearchive_mar  # noqa: E402
from trouble.images import PHOTO_SUFFIXES  # noqa: E402

DEFAULT_PHOTOS = REPO / "tests" / "fixtures" / "acne04"


def percentile(values, q):
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    values = sorted(values)
    position = (len(values) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def post_with_retries(session, url, photo: bytes, retry_budget_s: float, client_timeout_s: float,
                      max_tries: int) -> dict:
    """One logical request: a 503 is retried after a jittered exponential backoff while the request
    is younger than retry_budget_s; returns its outcome and every try."""
    tries, server_ms = [], None
    started = time.perf_counter()
    while True:
        sent = time.perf_counter()
        try:
            reply = session.post(url, data=photo, timeout=client_timeout_s)
            status = reply.status_code
            if status == 200:
                server_ms = reply.json()["timings_ms"]["total"]  # the handler's own time for this photo
        except requests.Timeout:
            status = "client_timeout"
        except requests.ConnectionError:
            status = "connection_error"
        except (ValueError, KeyError, TypeError):
            status = "bad_json"
        tries.append({"status": status, "seconds": time.perf_counter() - sent})
        if status != 503 or len(tries) >= max_tries:
            break
        pause = min(0.25 * 2 ** (len(tries) - 1), 4.0) * random.uniform(0.5, 1.5)
        if time.perf_counter() - started + pause > retry_budget_s:
            break
        time.sleep(pause)
    return {"ok": tries[-1]["status"] == 200, "seconds": time.perf_counter() - started, "tries": tries,
            "server_ms": server_ms}


def watch_workers(management_url: str, stop: threading.Event, seen: dict):
    """Every second: worker pids and the deepest queue seen (management API)."""
    while not stop.is_set():
        try:
            model = requests.get(f"{management_url}/models/trouble", timeout=5).json()[0]
            for worker in model["workers"]:
                if worker.get("pid") not in seen["pids"]:
                    seen["pids"].append(worker.get("pid"))
            seen["max_pending"] = max(seen["max_pending"], model["jobQueueStatus"]["pendingRequests"])
        except (requests.RequestException, ValueError, KeyError, IndexError):
            seen["monitor_errors"] += 1
        stop.wait(1.0)


def run_phase(server: dict, photos: list[bytes], clients: int, seconds: float, retry_budget_s: float,
              client_timeout_s: float, max_tries: int, max_requests_per_client: int) -> dict:
    url = f"{server['inference']}/predictions/trouble"
    outcomes, lock = [], threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(index: int):
        with requests.Session() as session:
            for number in range(max_requests_per_client):
                if time.perf_counter() >= deadline:
                    break
                outcome = post_with_retries(session, url, photos[(index + number) % len(photos)], retry_budget_s,
                                            client_timeout_s, max_tries)
                with lock:
                    outcomes.append(outcome)

    seen = {"pids": [], "max_pending": 0, "monitor_errors": 0}
    stop = threading.Event()
    monitor = threading.Thread(target=watch_workers, args=(server["management"], stop, seen), daemon=True)
    monitor.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    # Bounded: clients start no request after the deadline, and a started one ends within its
    # retry budget plus one client timeout.
    for thread in threads:
        thread.join(timeout=max(0.0, started + seconds + retry_budget_s + client_timeout_s + 10 - time.perf_counter()))
    elapsed = time.perf_counter() - started
    hung_clients = sum(thread.is_alive() for thread in threads)
    stop.set()
    monitor.join(timeout=10)
    return summarise(outcomes, clients, seconds, elapsed, seen, hung_clients)


def summarise(outcomes: list[dict], clients: int, seconds: float, elapsed: float, seen: dict,
              hung_clients: int) -> dict:
    tries = [t for o in outcomes for t in o["tries"]]
    statuses = {}
    for t in tries:
        statuses[str(t["status"])] = statuses.get(str(t["status"]), 0) + 1
    ok = [o for o in outcomes if o["ok"]]
    ok_seconds = [o["seconds"] for o in ok]
    single_200 = [t["seconds"] for t in tries if t["status"] == 200]
    shed = [t["seconds"] for t in tries if t["status"] == 503]
    handler_ms = [o["server_ms"] for o in ok if o["server_ms"] is not None]
    failed = [o for o in outcomes if not o["ok"]]
    reasons = {}
    for o in failed:
        reasons[str(o["tries"][-1]["status"])] = reasons.get(str(o["tries"][-1]["status"]), 0) + 1
    return {
        "clients": clients, "seconds": seconds, "elapsed_s": round(elapsed, 1),
        "requests": len(outcomes), "ok": len(ok), "failed": len(failed), "failed_by_reason": reasons,
        "hung_clients": hung_clients,
        "throughput_per_s": round(len(ok) / elapsed, 2) if elapsed else None,
        "latency_ms": {"p50": ms(percentile(ok_seconds, 50)), "p95": ms(percentile(ok_seconds, 95)),
                       "p99": ms(percentile(ok_seconds, 99)), "max": ms(max(ok_seconds, default=None)),
                       "mean": ms(statistics.fmean(ok_seconds)) if ok_seconds else None},
        "single_try_200_ms": {"p50": ms(percentile(single_200, 50)), "p95": ms(percentile(single_200, 95)),
                              "p99": ms(percentile(single_200, 99))},
        "handler_ms_per_photo": {"p50": percentile(handler_ms, 50), "p95": percentile(handler_ms, 95)},
        "answers_503": {"count": len(shed), "p50_ms": ms(percentile(shed, 50)), "p99_ms": ms(percentile(shed, 99)),
                        "max_ms": ms(max(shed, default=None))},
        "retried_requests": sum(1 for o in outcomes if len(o["tries"]) > 1),
        "most_tries": max((len(o["tries"]) for o in outcomes), default=0),
        "statuses": statuses,
        "worker_pids": seen["pids"], "worker_restarts": max(len(seen["pids"]) - 1, 0),
        "max_queue_seen": seen["max_pending"],
    }


def table(phases: list[dict]) -> str:
    lines = ["| clients | requests | ok | failed | ok/s | p50 ms | p95 ms | p99 ms | 503 answers (p50 ms) "
             "| retried | deepest queue | worker restarts |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        latency, shed = p["latency_ms"], p["answers_503"]
        lines.append(f"| {p['clients']} | {p['requests']} | {p['ok']} | {p['failed']} | {p['throughput_per_s']} | "
                     f"{latency['p50']} | {latency['p95']} | {latency['p99']} | "
                     f"{shed['count']} ({shed['p50_ms']}) | {p['retried_requests']} | {p['max_queue_seen']} | "
                     f"{p['worker_restarts']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_test", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path, help="a .mar (served under the name 'trouble')")
    parser.add_argument("--clients", default=[10, 50], type=list_of(at_least(1)),
                        help="comma-separated client counts, one phase each")
    parser.add_argument("--seconds", type=positive_float, default=30, help="how long each phase starts new requests")
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), type=existing_folder, help="a folder of photos to post")
    parser.add_argument("--retry-budget", type=positive_float, default=120,
                        help="seconds a client keeps retrying a request answered 503")
    parser.add_argument("--client-timeout", type=positive_float, default=330,
                        help="seconds a client waits for one answer (330, as the app and the batch CLI: "
                             "beyond TorchServe's own 300 s)")
    parser.add_argument("--max-tries", type=at_least(1), default=200, help="hard bound on tries per request")
    parser.add_argument("--max-requests-per-client", type=at_least(1), default=10_000)
    parser.add_argument("--job-queue-size", type=at_least(1), help="instead of config.properties' job_queue_size")
    parser.add_argument("--batch-size", type=at_least(1), help="instead of the .mar's batchSize")
    parser.add_argument("--out", required=True, type=output_file, help="JSON file for the results")
    args = parse_checked(parser, argv)

    model = Path(args.model).resolve()
    if not model.is_file():  # it exists (checked by its argument type): a folder
        print(f"error: {model} is a folder: TorchServe serves a .mar file", file=sys.stderr)
        return 2
    try:  # found now, not after TorchServe waited 180 s for a model it could not load
        check_mar(model)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    photo_paths = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photo_paths:
        print(f"error: no photos in {args.photos}", file=sys.stderr)
        return 2
    photos = [p.read_bytes() for p in photo_paths]
    client_counts = args.clients

    workdir = Path(tempfile.mkdtemp(prefix="trouble-load-"))
    if args.batch_size:
        (workdir / "store").mkdir()
        model = rearchive_mar(model, workdir / "store", batch_size=args.batch_size)
    # A later line wins in TorchServe's config, so this overrides config.properties' job_queue_size.
    extra_config = f"job_queue_size={args.job_queue_size}" if args.job_queue_size else ""
    with torchserve_serving(model, workdir, extra_config) as server:
        description = wait_for_model(server)
        url = f"{server['inference']}/predictions/trouble"
        for photo in photos[:3]:  # warm-up, not counted
            requests.post(url, data=photo, timeout=args.client_timeout).raise_for_status()
        phases = []
        for clients in client_counts:
            print(f"[load] {clients} clients for {args.seconds:.0f} s ...", flush=True)
            phases.append(run_phase(server, photos, clients, args.seconds, args.retry_budget, args.client_timeout,
                                    args.max_tries, args.max_requests_per_client))
            print(f"[load]   {phases[-1]['ok']} ok, {phases[-1]['failed']} failed, "
                  f"{phases[-1]['answers_503']['count']} answers 503", flush=True)
        server_settings = {k: description.get(k) for k in ("batchSize", "maxBatchDelay", "responseTimeout",
                                                          "minWorkers", "maxWorkers")}
        # The queue's size as the server has it: its free capacity when nothing waits.
        server_settings["job_queue_size"] = description["jobQueueStatus"]["remainingCapacity"]

    result = {"model": str(args.model), "model_sha256": hashlib.sha256(Path(args.model).read_bytes()).hexdigest(),
              "photos": [p.name for p in photo_paths], "cpus": os.cpu_count(),
              "seconds_per_phase": args.seconds, "server": server_settings,
              "client_policy": {"retried_status": 503, "retry_budget_s": args.retry_budget,
                                "backoff_s": "0.25 x 2^k, at most 4, times a random 0.5-1.5",
                                "max_tries": args.max_tries, "client_timeout_s": args.client_timeout,
                                "think_time_s": 0},
              "phases": phases}
    print(f"\nLoad test: {args.model}, {len(photos)} photos, {os.cpu_count()} CPUs, {args.seconds:.0f} s per phase, "
          f"server {server_settings}")
    print(table(phases))
    write_results(args.out, result)
    return 0


if __name__ == "__main__":
    run_main(main)
