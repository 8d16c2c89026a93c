"""Session fixtures: generated data, a smoke model trained for real, and a real TorchServe.

Everything runs from the repository root with the project's virtualenv (`make test`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `import trouble`, `from tests.synthetic_data import ...`
FIXTURES = REPO / "tests" / "fixtures"
ACNE04_PHOTOS = sorted((FIXTURES / "acne04").glob("*.jpg"))
# The full ACNE04 export lies in shared/ beside the checkout (CI clones elsewhere, with shared/ beside it).
ACNE04_DATA = next((p for p in (REPO.parent / "shared" / "data" / "acne04", Path("/work/shared/data/acne04"))
                    if p.is_dir()), REPO.parent / "shared" / "data" / "acne04")
BIN = Path(sys.executable).parent

from tests.synthetic_data import make_dataset  # noqa: E402
from trouble import images  # noqa: E402, F401  (registers PIL's HEIC plugin: tests write HEIC photos too)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: every socket stays open until all are chosen (one after
    another, the system may hand out the same port twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def ended_by_ctrl_c(returncode: int, stderr: str, message: str) -> bool:
    """A CLI that caught Ctrl-C said `message`, with no traceback, and exited 130, or died of the SIGINT,
    which a shell reports as 130 too. Seen once, in a fresh clone's CI run (the message printed, then
    exit -2), not reproduced elsewhere. The likely cause: CPython flags a KeyboardInterrupt that leaves
    code run through its C API (as during torch's imports) as unhandled, and ends by SIGINT at exit
    even when Python code caught it afterwards."""
    return message in stderr and "Traceback" not in stderr and returncode in (130, -signal.SIGINT)


def run_module(args, timeout=600, env=None, check=True):
    """python -m ... from the repo root; returns the CompletedProcess (output captured)."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """Three trouble types, 12 train + 4 valid images of 320x320, in the project's COCO layout."""
    root = tmp_path_factory.mktemp("synthetic")
    make_dataset(root, n_images=16, size=(320, 320), seed=0, fmt="coco")
    return root


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory, synthetic_data) -> dict:
    """`python -m train.train` with the smoke config: trains, evaluates and archives, on CPU."""
    work = tmp_path_factory.mktemp("smoke_work")
    store = tmp_path_factory.mktemp("smoke_store")
    result = run_module(["train.train", "train/configs/tood_smoke.py", "--data", str(synthetic_data),
                         "--work-dir", str(work), "--model-store", str(store), "--iters", "60",
                         "--val-interval", "30"])
    return {"work_dir": work, "mar": store / "trouble.mar", "stdout": result.stdout, "data": synthetic_data}


@pytest.fixture(scope="session")
def smoke_mar(smoke_training) -> Path:
    return smoke_training["mar"]


@pytest.fixture(scope="session")
def detector(smoke_mar):
    """The shared inference core, in process, on the smoke .mar."""
    from trouble.inference import TroubleDetector

    return TroubleDetector.from_path(smoke_mar, device="cpu")


def start_torchserve(model_store: Path, workdir: Path, mar_name: str = "trouble.mar", extra_config: str = ""):
    """A real TorchServe on free loopback ports, with the repo's config.properties adapted.

    Returns a dict with the URLs, its env (for `torchserve --stop`) and its log folder.
    """
    names = ("inference", "management", "metrics", "grpc_inference", "grpc_management", "worker")
    ports = dict(zip(names, free_ports(len(names))))
    config = (REPO / "config.properties").read_text()
    lines = []
    for line in config.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("inference_address", "management_address", "metrics_address", "model_store", "load_models",
                   "grpc_inference_port", "grpc_management_port", "initial_worker_port"):
            continue
        lines.append(line)
    lines += [f"inference_address=http://127.0.0.1:{ports['inference']}",
              f"management_address=http://127.0.0.1:{ports['management']}",
              f"metrics_address=http://127.0.0.1:{ports['metrics']}",
              f"model_store={model_store}",
              # gRPC ports of its own too: a second server on 7070/7071 would fail to bind and stop.
              f"grpc_inference_port={ports['grpc_inference']}", f"grpc_management_port={ports['grpc_management']}",
              # Worker sockets are /tmp/.ts.sock.<port>: a port of its own keeps servers apart.
              f"initial_worker_port={ports['worker']}", extra_config]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.properties").write_text("\n".join(lines) + "\n")
    # Its own temp dir: TorchServe keeps its pid file there, so test servers never meet `make serve`.
    env = {**os.environ, "TS_CONFIG_FILE": str(workdir / "config.properties"),
           "TMPDIR": str(workdir), "LOG_LOCATION": str(workdir / "logs"),
           "METRICS_LOCATION": str(workdir / "logs"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    # The Java server inherits stdout: send it to a file, or the pipe never closes.
    with open(workdir / "torchserve.out", "w") as out:
        subprocess.run([str(BIN / "torchserve"), "--start", "--ncs", "--ts-config", str(workdir / "config.properties"),
                        "--models", f"trouble={mar_name}"], cwd=workdir, env=env, check=True,
                       stdout=out, stderr=subprocess.STDOUT, timeout=60)
    server = {"inference": f"http://127.0.0.1:{ports['inference']}",
              "management": f"http://127.0.0.1:{ports['management']}",
              "metrics": f"http://127.0.0.1:{ports['metrics']}", "env": env, "workdir": workdir,
              "logs": workdir / "logs"}
    return server


def wait_for_model(server: dict, timeout_s: float = 180) -> dict:
    """Wait until the model's worker is READY (as `make serve` does); return the management API's
    description."""
    from handler.wait_ready import NotReady, wait_until_ready

    try:
        return wait_until_ready(server["management"], server["inference"], timeout_s)
    except NotReady as error:
        raise AssertionError(f"{error}\n{read_log(server)}") from None


def read_log(server: dict, name: str = "model_log.log", tail: int = 4000) -> str:
    path = server["logs"] / name
    return path.read_text(errors="replace")[-tail:] if path.is_file() else f"(no {path})"


def stop_torchserve(server: dict):
    subprocess.run([str(BIN / "torchserve"), "--stop"], cwd=server["workdir"], env=server["env"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    pid_file = server["workdir"] / ".model_server.pid"
    if pid_file.is_file():  # --stop failed: do not leave a server behind
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


@contextlib.contextmanager
def torchserve_serving(model: Path, workdir: Path, extra_config: str = ""):
    """For the benchmarks: a TorchServe serving the .mar `model` while the block runs. Afterwards it
    is stopped and `workdir` removed; if the block failed, the logs are kept and the model log printed."""
    server = start_torchserve(model.parent, workdir, mar_name=model.name, extra_config=extra_config)
    try:
        yield server
    except BaseException:
        stop_torchserve(server)
        print(f"TorchServe's logs are kept in {workdir / 'logs'}; the model log ends:\n{read_log(server)}",
              file=sys.stderr)
        raise
    stop_torchserve(server)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory, smoke_mar) -> dict:
    from train.archive import rearchive_mar

    store = tmp_path_factory.mktemp("ts_store")
    # batchSize 4 (the default is 1) so that the handler's path for several requests per call is served.
    rearchive_mar(smoke_mar, store, batch_size=4)
    server = start_torchserve(store, tmp_path_factory.mktemp("ts_run"))
    try:
        server["model"] = wait_for_model(server)
        yield server
    finally:
        stop_torchserve(server)


@pytest.fixture(scope="session")
def torchserve_url(torchserve) -> str:
    return torchserve["inference"]


def worker_state(server: dict) -> list[tuple]:
    """(pid, status) of each worker, from the management API (not /ping: it says Healthy while
    workers crash-loop)."""
    reply = requests.get(f"{server['management']}/models/trouble", timeout=10)
    reply.raise_for_status()
    return [(w.get("pid"), w["status"]) for w in reply.json()[0]["workers"]]


def read_json(path: Path):
    return json.loads(Path(path).read_text())
