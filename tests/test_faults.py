"""Faults, each with a real TorchServe started here on free loopback ports: a worker killed in the
middle of a request, the server not running, and a .mar whose checkpoint is missing or damaged.

The app's own server-down message is tested in tests/test_app.py (test_server_down_gives_a_clear_message).
"""
from __future__ import annotations

import io
import os
import random
import re
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import (ACNE04_PHOTOS, REPO, free_port, read_log, start_torchserve, stop_torchserve,
                            wait_for_model, worker_state)
from tests.synthetic_data import make_image

WHOLE_LOG = 10 ** 8  # read_log's tail, in characters: all of it


def wait_until(condition, timeout_s: float, interval_s: float = 0.05):
    """condition's first truthy value, or None after timeout_s."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    return None


def predict_folder(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handler.predict_folder", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_a_worker_killed_mid_request_is_restarted_and_serving_resumes(smoke_mar, tmp_path):
    # A server of this test's own: killing the session server's worker would disturb other tests.
    server = start_torchserve(smoke_mar.parent, tmp_path / "ts")
    url = f"{server['inference']}/predictions/trouble"
    try:
        wait_for_model(server)
        [(pid, _)] = worker_state(server)
        # Sliced at 128 px, a 1600x1200 photo keeps the smoke model busy for many seconds.
        image, _, _ = make_image(size=(1600, 1200), n_lesions=30, seed=5)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        received = read_log(server, tail=WHOLE_LOG).count("Backend received inference")
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(requests.post, url, data=buffer.getvalue(),
                                    headers={"X-Trouble-Slice-Size": "128"}, timeout=120)
            assert wait_until(lambda: read_log(server, tail=WHOLE_LOG).count("Backend received inference") > received,
                              60), "the request never reached the worker"
            os.kill(pid, signal.SIGKILL)  # the worker process of the TorchServe this test started
            started = time.time()
            reply = in_flight.result(timeout=120)
        # An answer, not a hang: TorchServe says the worker died (or the request had already finished).
        assert time.time() - started < 60
        assert reply.status_code == 200 or (500 <= reply.status_code < 600 and "died" in reply.text.lower()), \
            (reply.status_code, reply.text[:300])

        restarted = wait_until(lambda: [p for p, status in worker_state(server) if status == "READY" and p != pid],
                               120, interval_s=0.5)
        assert restarted, f"no new READY worker: {worker_state(server)}\n{read_log(server)}"
        reply = requests.post(url, data=ACNE04_PHOTOS[0].read_bytes(), timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.json()["image"]["width"] == 640
    finally:
        stop_torchserve(server)


def test_make_serve_says_when_no_torchserve_answers_at_its_config_addresses():
    """`make serve` takes "already running" for success; if that is a server started with another config
    (the same pid file), nothing answers where it waits: it says so instead of waiting out 180 s."""
    from handler.wait_ready import NotReady, wait_until_ready

    management, inference = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    with pytest.raises(NotReady, match=f"nothing answers at {management} after 2 s: no TorchServe runs") as error:
        wait_until_ready(management, inference, timeout_s=30, no_answer_s=2)
    assert error.value.reason == "no answer"  # not "gave up": `make serve` leaves that server alone



def test_wait_ready_refuses_a_timeout_or_config_it_cannot_use(tmp_path):
    """A timeout of 0, below or NaN asked nothing, then said the model was not ready in "-5 s"; a
    TS_CONFIG_FILE that is not there was passed over for the default ports (another TorchServe's)."""
    for timeout in ("-5", "0", "nan"):
        result = subprocess.run([sys.executable, "-m", "handler.wait_ready", f"--timeout={timeout}"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "--timeout must be a number of seconds above 0" in result.stderr
    result = subprocess.run([sys.executable, "-m", "handler.wait_ready"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "TS_CONFIG_FILE": str(tmp_path / "gone.properties")})
    assert result.returncode == 2 and f"TS_CONFIG_FILE {tmp_path / 'gone.properties'} is not a file" in result.stderr


def test_make_serve_refuses_a_server_started_in_another_folder(torchserve):
    """Another checkout's TorchServe, with the same TMPDIR (its pid file), made `torchserve --start`
    say "already running", which `make serve` took for its own server: the app then showed that
    folder's model, and `make demo`'s Ctrl-C stopped it."""
    env = {**os.environ, "TMPDIR": str(torchserve["workdir"])}  # where the test server keeps its pid file
    result = subprocess.run(["make", "-o", ".venv/.setup-done", "serve"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0, result.stdout
    assert f"A TorchServe started in {torchserve['workdir']} is already running" in result.stdout, result.stdout
    assert "make stop" in result.stdout
    assert worker_state(torchserve)  # still up, untouched


def test_cli_says_clearly_that_torchserve_is_not_running(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: a stopped TorchServe
    result = predict_folder(ACNE04_PHOTOS[0].parent, "--server", url, "--out", tmp_path / "results.json")
    assert result.returncode == 2, result.stderr
    assert "not answering" in result.stderr and url in result.stderr and "make serve" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "results.json").exists()
    # A mistyped address is named as such, not as a server that does not answer.
    for mistyped, message in (("http://[::1", "is not a valid address (Invalid IPv6 URL)"),
                              ("http://127.0.0.1:99999", "is not a valid address (Port out of range"),
                              ("http://", "names no host")):
        result = predict_folder(ACNE04_PHOTOS[0].parent, "--server", mistyped, "--out", tmp_path / "results.json")
        assert result.returncode == 2 and message in result.stderr and "not answering" not in result.stderr


def damaged_checkpoint(case: str, real: bytes) -> bytes | None:
    if case == "missing":
        return None
    if case == "garbage":
        return random.Random(0).randbytes(50_000)
    if case == "truncated":  # an interrupted copy or download
        return real[: len(real) // 2]
    raise ValueError(case)


def mar_with_damaged_checkpoint(smoke_mar: Path, folder: Path, case: str) -> Path:
    """The smoke .mar with model.pth removed, replaced by random bytes, or cut in half."""
    folder.mkdir(parents=True, exist_ok=True)
    mar = folder / "trouble.mar"
    with zipfile.ZipFile(smoke_mar) as source, zipfile.ZipFile(mar, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "model.pth":
                data = damaged_checkpoint(case, data)
                if data is None:
                    continue
            target.writestr(item, data)
    return mar


def exception_lines(log: str) -> list[str]:
    """The final line of each Python traceback in the model log: 'SomeError: message'."""
    return [line for line in log.splitlines() if re.search(r"MODEL_LOG - [\w.]*(Error|Exception): ", line)]


@pytest.mark.parametrize("case", ["missing", "garbage"])
def test_mar_with_a_damaged_checkpoint_never_serves_and_the_log_says_why(smoke_mar, tmp_path, case):
    # Registration over HTTP is off (config.properties), so the .mar is loaded at start-up, as `make serve` does.
    mar = mar_with_damaged_checkpoint(smoke_mar, tmp_path / "store", case)
    server = start_torchserve(mar.parent, tmp_path / "ts")
    statuses, pids = set(), set()

    def failed_twice():
        try:
            state = worker_state(server)
        except requests.RequestException:  # still starting
            return False
        statuses.update(status for _, status in state)
        pids.update(pid for pid, _ in state if pid and pid > 0)
        return len(pids) >= 2 and exception_lines(read_log(server, tail=WHOLE_LOG))

    try:
        # TorchServe starts the worker, it fails to load, TorchServe retries: wait for a second failure.
        assert wait_until(failed_twice, 120, interval_s=0.5), f"no load failure seen: {statuses}\n{read_log(server)}"
        assert "READY" not in statuses
        log = read_log(server, tail=WHOLE_LOG)
        errors = exception_lines(log)
        assert any("model.pth" in line for line in errors), f"the error does not name model.pth: {errors[-2:]}"
        # torch's own advice for a refused file ("re-running with weights_only=False will likely succeed")
        # is wrong for a damaged one, and unsafe for an untrusted one: it must not reach the operator.
        assert "will likely succeed" not in log
    finally:
        stop_torchserve(server)


def test_a_model_that_cannot_load_turns_ping_unhealthy_and_make_serve_says_so(smoke_mar, tmp_path):
    """/ping is what the app checks (space/backends.py): once TorchServe gives up restarting the
    worker (the .mar's maxRetryTimeoutInSec), it must answer 500 "Unhealthy" instead of "Healthy"."""
    mar = mar_with_damaged_checkpoint(smoke_mar, tmp_path / "store", "missing")
    server = start_torchserve(mar.parent, tmp_path / "ts")
    try:
        description = wait_until(lambda: _describe(server), 60, interval_s=0.5)
        assert description, read_log(server)
        give_up_s = description["maxRetryTimeoutInSec"]
        assert give_up_s <= 60, (f"maxRetryTimeoutInSec is {give_up_s} s: /ping says Healthy that long while no "
                                 f"worker can load (set it in train/archive.py TORCHSERVE_SETTINGS)")
        unhealthy = wait_until(lambda: requests.get(f"{server['inference']}/ping", timeout=5).status_code == 500,
                               give_up_s + 30, interval_s=1)
        assert unhealthy, requests.get(f"{server['inference']}/ping", timeout=5).text
        assert "Unhealthy" in requests.get(f"{server['inference']}/ping", timeout=5).text
        # `make serve`'s readiness check says so at once, with the load error from the log, instead of
        # waiting out its 180 s.
        ready = subprocess.run([sys.executable, "-m", "handler.wait_ready"], cwd=server["workdir"],
                               env={**server["env"], "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                               timeout=240)
        # Exit code 3, on which `make serve` stops this server (and only on it).
        assert ready.returncode == 3 and "gave up on the 'trouble' model" in ready.stderr, ready.stderr[-1000:]
        assert "model.pth" in ready.stderr and "Traceback" not in ready.stderr.split("Last lines")[0]
        # The log read is the one TorchServe writes, in its LOG_LOCATION (not always ./logs).
        assert f"Last lines of {server['logs'] / 'model_log.log'}:" in ready.stderr, ready.stderr[-1000:]
        # The batch CLI stops at once (each photo would wait for TorchServe's 300 s timeout in turn).
        result = predict_folder(ACNE04_PHOTOS[0].parent, "--server", server["inference"], "--out",
                                tmp_path / "results.json")
        assert result.returncode == 2 and "says it is unhealthy" in result.stderr, result.stderr[-1000:]
    finally:
        stop_torchserve(server)


def _describe(server):
    try:
        reply = requests.get(f"{server['management']}/models/trouble", timeout=5)
        return reply.json()[0] if reply.status_code == 200 else None
    except (requests.RequestException, ValueError, IndexError):
        return None


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated"])
def test_cli_with_a_damaged_checkpoint_exits_2_naming_the_file(smoke_mar, tmp_path, case):
    mar = mar_with_damaged_checkpoint(smoke_mar, tmp_path / "store", case)
    result = predict_folder(ACNE04_PHOTOS[0].parent, "--model", mar, "--out", tmp_path / "results.json")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.pth" in result.stderr
    # Named by the archive and the file in it, not by the temporary copy it was unpacked to (gone by then).
    assert f"error: {mar}: " in result.stderr and "trouble-mar-" not in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "will likely succeed" not in result.stderr
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("member", ["model.pth", "config.py"])
def test_cli_with_a_mar_damaged_in_transit_exits_2_naming_it(smoke_mar, tmp_path, member):
    """Bytes changed inside the archive (a bad disk or copy): unpacking fails its CRC check, or (in
    a compressed member) decompression itself."""
    data = bytearray(smoke_mar.read_bytes())
    with zipfile.ZipFile(smoke_mar) as mar:
        item = mar.getinfo(member)
    middle = item.header_offset + 30 + len(item.filename) + len(item.extra) + item.compress_size // 2
    data[middle:middle + 16] = bytes(byte ^ 0x5A for byte in data[middle:middle + 16])
    damaged = tmp_path / "trouble.mar"
    damaged.write_bytes(bytes(data))
    result = predict_folder(ACNE04_PHOTOS[0].parent, "--model", damaged, "--out", tmp_path / "results.json")
    assert result.returncode == 2 and f"{damaged} is damaged" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "results.json").exists()
    # Archiving it again (new settings) names it too: it was a BadZipFile traceback.
    again = subprocess.run([sys.executable, "-m", "train.archive", "--mar", str(damaged), "--sliced", "false",
                            "--out", str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and f"{damaged} is damaged" in again.stderr and "Traceback" not in again.stderr


def test_a_mar_cut_off_by_a_copy_that_did_not_finish_is_named_so(smoke_mar, tmp_path):
    """It was called "not a .mar archive (a zip file)", which sends a user looking for another file."""
    cut = tmp_path / "trouble.mar"
    cut.write_bytes(smoke_mar.read_bytes()[:smoke_mar.stat().st_size // 2])
    result = predict_folder(ACNE04_PHOTOS[0].parent, "--model", cut, "--out", tmp_path / "results.json")
    assert result.returncode == 2 and f"{cut} is damaged: it is cut off" in result.stderr, result.stderr[-2000:]
    again = subprocess.run([sys.executable, "-m", "train.archive", "--mar", str(cut), "--sliced", "false",
                            "--out", str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and f"{cut} is damaged: it is cut off" in again.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda text: "- a\n", "has a setting of the wrong shape"),
    (lambda text: text.replace("trouble:", "trouble: [", 1), "is not valid YAML"),
    (lambda text: re.sub(r"  slicing:\n(    .*\n)+", "  slicing: [1]\n", text, count=1), "wrong shape"),
    (lambda text: re.sub(r"  score_thresholds:\n(    .*\n)+", "  score_thresholds: [0.2]\n", text, count=1),
     "score_thresholds must map type names"),
    # Misspelt: left at its default it had reversed the setting (slicing stays on, framing off)
    (lambda text: text.replace("    enabled: true", "    enabeld: false", 1),
     "unknown setting(s) trouble.slicing.enabeld (misspelt? trouble.slicing takes enabled, "),
    (lambda text: text.replace("  framing: none", "  framming: face", 1), "unknown setting(s) trouble.framming"),
    (lambda text: text.replace("    slice_size: 640", "    slice_size: '640'", 1), "has the wrong type"),
    # Out of range: a setting of the archive, not of a request, so the archive is named
    (lambda text: text.replace("    slice_size: 640", "    slice_size: 10000", 1), "slice_size must be between"),
    (lambda text: text.replace("  framing: none", "  framing: fcae", 1), "framing must be one of"),
    # A threshold of 2 would hide every lesion in silence
    (lambda text: re.sub(r"(  score_thresholds:\n    \w+: )[0-9.]+", r"\g<1>2", text, count=1),
     "score_thresholds must be numbers in [0, 1]"),
    # The text "false" would turn slicing on; no photo passes a pixel limit of 0
    (lambda text: text.replace("    enabled: true", "    enabled: 'false'", 1), "slicing.enabled must be true or false"),
    (lambda text: text.replace("  max_pixels: 120000000", "  max_pixels: 0", 1), "max_pixels must be a whole number"),
])
def test_a_hand_edited_model_config_of_the_wrong_shape_is_named(smoke_mar, tmp_path, edit, message):
    """README invites editing a staged folder's model-config.yaml: a mistake there is one line naming
    the .mar, in the batch CLI and in train.archive, not a traceback."""
    with zipfile.ZipFile(smoke_mar) as original:
        members = {name: original.read(name) for name in original.namelist()}
    text = members["model-config.yaml"].decode()
    edited = edit(text)
    assert edited != text, "the edit must change the file"
    members["model-config.yaml"] = edited.encode()
    mar = tmp_path / "edited.mar"
    with zipfile.ZipFile(mar, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    result = predict_folder(ACNE04_PHOTOS[0].parent, "--model", mar, "--out", tmp_path / "results.json")
    assert result.returncode == 2 and message in result.stderr and str(mar) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "results.json").exists()
    again = subprocess.run([sys.executable, "-m", "train.archive", "--mar", str(mar), "--batch-size", "2", "--out",
                            str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and message in again.stderr and "Traceback" not in again.stderr, again.stderr[-2000:]


def test_a_bad_threshold_in_an_archive_can_be_mended_with_train_archive(smoke_mar, tmp_path):
    """The archive's values are checked once the changes asked for are made: a threshold of 2 that
    --thresholds-json replaces is mended, not refused (it was checked before the change)."""
    with zipfile.ZipFile(smoke_mar) as original:
        members = {name: original.read(name) for name in original.namelist()}
    text = members["model-config.yaml"].decode()
    members["model-config.yaml"] = re.sub(r"(  score_thresholds:\n    (\w+): )[0-9.]+", r"\g<1>2", text,
                                          count=1).encode()
    typ = re.search(r"  score_thresholds:\n    (\w+): ", text).group(1)
    mar = tmp_path / "edited.mar"
    with zipfile.ZipFile(mar, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    mended = subprocess.run([sys.executable, "-m", "train.archive", "--mar", str(mar), "--thresholds-json",
                             f'{{"{typ}": 0.3}}', "--out", str(tmp_path / "store")], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert mended.returncode == 0, mended.stderr[-1500:]
    with zipfile.ZipFile(tmp_path / "store" / "trouble.mar") as archive:
        assert f"    {typ}: 0.3\n" in archive.read("model-config.yaml").decode()


def test_a_model_failure_answers_that_request_500_and_a_cuda_error_ends_the_worker(smoke_mar, tmp_path):
    """The handler in process, on the smoke model, with the model made to fail: no photo makes it fail
    on CPU, and a CUDA error cannot happen here at all. An ordinary failure is that request's 500
    (its batch-mate is answered); a CUDA error is raised on, so that TorchServe replaces the worker
    whose device it left unusable."""
    from ts.context import Context, RequestProcessor

    from handler.trouble_handler import TroubleHandler

    model_dir = tmp_path / "model"
    zipfile.ZipFile(smoke_mar).extractall(model_dir)
    context = Context("trouble", str(model_dir), {}, 2, None, "0.12.0")
    context.request_processor = [RequestProcessor({}), RequestProcessor({})]
    handler = TroubleHandler()
    handler.initialize(context)
    handler.context = context
    working_predict, next_failure = handler.detector.predict, []

    def predict_or_fail(*args, **kwargs):
        if next_failure:
            raise next_failure.pop()
        return working_predict(*args, **kwargs)

    handler.detector.predict = predict_or_fail
    photo = ACNE04_PHOTOS[0].read_bytes()
    next_failure.append(ValueError("a shape the model did not expect"))
    answers = handler.postprocess(handler.inference(handler.preprocess([{"data": photo}, {"data": photo}])))
    assert answers[0]["code"] == "internal_error" and "Other photos are not affected" in answers[0]["error"]
    assert "a shape the model did not expect" not in answers[0]["error"]  # details go to the log only
    assert context.request_processor[0].get_response_status_code() == 500
    assert "detections" in answers[1] and context.request_processor[1].get_response_status_code() == 200

    next_failure.append(RuntimeError("CUDA error: an illegal memory access was encountered"))
    with pytest.raises(RuntimeError, match="CUDA error"):
        handler.inference(handler.preprocess([{"data": photo}]))


def run_as_nobody(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """A command as the user nobody: root may write anywhere, so only another user meets a folder
    it may not write in."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": os.environ["PATH"], "HOME": str(home), "MPLCONFIGDIR": str(home)})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the commands as another user")
def test_outputs_that_cannot_be_written_are_refused_before_any_photo(tmp_path):
    """The batch CLI and the evaluation had run over every photo and then failed with a
    PermissionError traceback, the results lost. The batch CLI never writes over its --model. A
    subfolder that cannot be listed had been passed over in silence by the batch CLI and the import."""
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="unwritable-", dir="/tmp"))  # pytest's tmp_path is root's alone
    try:
        shared.chmod(0o755)
        photos = shared / "photos"
        photos.mkdir()
        (photos / "face.jpg").write_bytes(ACNE04_PHOTOS[0].read_bytes())
        # A patient's folder this user may not list: whether it holds photos is unknown, which is said.
        (photos / "patient_x").mkdir(mode=0o700)
        (photos / "patient_x" / "face.jpg").write_bytes(ACNE04_PHOTOS[0].read_bytes())
        locked = shared / "locked"
        locked.mkdir(mode=0o555)
        home = shared / "home"
        home.mkdir(mode=0o777)
        batch = run_as_nobody(["-m", "handler.predict_folder", str(photos), "--model", str(shared / "m.mar"),
                               "--out", str(locked / "results.json")], home)
        assert batch.returncode == 2, batch.stderr
        assert f"{locked / 'results.json'}: no permission to write in {locked}" in batch.stderr and "Traceback" not in batch.stderr
        assert "not analysed (run the command on each folder): patient_x/ (cannot be read)" in batch.stderr
        private = run_as_nobody(["-m", "handler.predict_folder", str(photos / "patient_x"), "--model",
                                 str(shared / "m.mar"), "--out", str(home / "results.json")], home)
        assert private.returncode == 2 and "Traceback" not in private.stderr, private.stderr
        assert f"the folder {photos / 'patient_x'} cannot be read (Permission denied)" in private.stderr
        (photos / "face.xml").write_text("<annotation><filename>face.jpg</filename><size><width>640</width>"
                                         "<height>640</height></size><object><name>acne</name><bndbox><xmin>10</xmin>"
                                         "<ymin>10</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>")
        voc = run_as_nobody(["-m", "train.data", "import", "--format", "voc", "--src", str(photos), "--out",
                             str(locked / "imported")], home)
        assert voc.returncode == 2 and f"--out {locked / 'imported'}: no permission to write in {locked}" \
            in voc.stderr and "split" not in voc.stdout, voc.stdout + voc.stderr  # before reading, not after
        (shared / "out").mkdir(mode=0o777)
        (shared / "out").chmod(0o777)  # mkdir's mode is cut by the umask
        voc = run_as_nobody(["-m", "train.data", "import", "--format", "voc", "--src", str(photos), "--out",
                             str(shared / "out" / "imported")], home)
        assert voc.returncode == 0, voc.stderr
        assert "patient_x/" in voc.stdout and "subfolder that cannot be read" in voc.stdout, voc.stdout
        evaluation = run_as_nobody(["-m", "train.evaluate", "--model", str(shared / "m.mar"), "--gt",
                                    str(photos / "annotations.json"), "--out", str(locked / "eval")], home)
        assert evaluation.returncode == 2, evaluation.stderr
        assert f"--out {locked / 'eval'}: no permission to write in {locked}" in evaluation.stderr
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)

    model = tmp_path / "trouble.mar"
    model.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: the bytes must stay as they are
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "face.jpg").write_bytes(ACNE04_PHOTOS[0].read_bytes())
    for option in ("--out", "--csv"):
        outputs = {"--out": str(tmp_path / "r.json"), option: str(model)}
        result = subprocess.run([sys.executable, "-m", "handler.predict_folder", str(tmp_path / "photos"), "--model",
                                 str(model), *[part for pair in outputs.items() for part in pair], "--overwrite"],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and f"{model} is the --model: write the results elsewhere" in result.stderr
        assert model.read_bytes() == b"PK\x05\x06" + bytes(18)
