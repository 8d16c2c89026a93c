"""space/push.py against a fake Hugging Face Hub on 127.0.0.1 (no other network), and the Space's files.

The fake Hub answers the calls that create_repo, update_repo_settings and upload_folder make (repo
creation, settings, "preupload", commit) and records every request, so the test sees exactly what would reach the Hub.
The Docker variant cannot be built here (no Docker): its files are checked statically.
"""
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SPACE = REPO / "space"
PUSH = SPACE / "push.py"
TOKEN = "hf_faketoken_for_tests_0123456789"
SPACE_ID = "someone/skin-trouble"

sys.path.insert(0, str(SPACE))
import push  # noqa: E402  (space/push.py)


class FakeHub(ThreadingHTTPServer):
    """Just enough of the Hub's HTTP API for create_repo + upload_folder; records every request."""

    def __init__(self, accepted_token: str):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.accepted_token = accepted_token
        self.requests = []   # (method, path, headers dict, body bytes)
        self.committed = {}  # path in repo → bytes
        self.validated_readmes = []
        self.existing = {}   # Space id → its visibility, for Spaces made before the push
        self.base = f"http://127.0.0.1:{self.server_address[1]}"


class FakeHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self._record(b"")
        self._answer(404, {"error": "not faked"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record(body)
        hub = self.server
        if self.headers.get("Authorization") != f"Bearer {hub.accepted_token}":
            return self._answer(401, {"error": "Invalid credentials in Authorization header"})
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            request = json.loads(body)
            if f"{request['organization']}/{request['name']}" in hub.existing:  # the Hub's 409 names the url too
                return self._answer(409, {"error": "You already created this space repo",
                                          "url": f"{hub.base}/spaces/{request['organization']}/{request['name']}"})
            return self._answer(200, {"url": f"{hub.base}/spaces/{request['organization']}/{request['name']}",
                                      "name": f"{request['organization']}/{request['name']}"})
        if path == "/api/validate-yaml":  # upload_folder has the README's header checked first
            content = json.loads(body)["content"]
            hub.validated_readmes.append(content)
            try:
                header = yaml.safe_load(content.split("---")[1])
                assert isinstance(header, dict)
            except Exception as error:
                return self._answer(400, {"errors": [{"message": f"invalid YAML header: {error}"}]})
            return self._answer(200, {"errors": [], "warnings": []})
        if re.fullmatch(r"/api/spaces/[^/]+/[^/]+/preupload/main", path):
            files = json.loads(body)["files"]
            return self._answer(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                for f in files]})
        match = re.fullmatch(r"/api/spaces/([^/]+/[^/]+)/commit/main", path)
        if match:
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    assert item["value"]["encoding"] == "base64"
                    hub.committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] != "header":
                    return self._answer(400, {"error": f"unexpected commit item {item['key']}"})
            oid = "0" * 40
            return self._answer(200, {"commitUrl": f"{hub.base}/spaces/{match.group(1)}/commit/{oid}",
                                      "commitOid": oid})
        self._answer(404, {"error": "not faked"})

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record(body)
        hub = self.server
        if self.headers.get("Authorization") != f"Bearer {hub.accepted_token}":
            return self._answer(401, {"error": "Invalid credentials in Authorization header"})
        match = re.fullmatch(r"/api/spaces/([^/]+/[^/]+)/settings", self.path)
        if match and match.group(1) in hub.existing:
            hub.existing[match.group(1)] = json.loads(body)["visibility"]
            return self._answer(200, {})
        self._answer(404, {"error": "not faked"})

    def _record(self, body):
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.requests.append((self.command, self.path, headers, body))

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_hub():
    hub = FakeHub(accepted_token=TOKEN)
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


@pytest.fixture
def model_file(tmp_path):
    """A stand-in .mar (a zip with an archive's files): push.py uploads the file as it is."""
    path = tmp_path / "trouble.mar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model-config.yaml", "trouble:\n  classes: [acne]\n")
        archive.writestr("model.pth", b"stand-in weights")
        archive.writestr("config.py", "model = dict()\n")
    return path


def run_push(*args, endpoint=None, token=TOKEN):
    # A bare environment: no saved token, cache or endpoint of the person running the tests.
    home = Path(tempfile.mkdtemp(prefix="push-home-"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HF_HOME": str(home / "hf"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, str(PUSH), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def listed_files(stdout: str) -> set:
    return {line.split()[0] for line in stdout.splitlines() if line.startswith("  ")}


def expected_gradio_files(wheel_name: str) -> set:
    trouble = {f"trouble/{p.relative_to(REPO / 'trouble').as_posix()}" for p in (REPO / "trouble").rglob("*.py")
               if "__pycache__" not in p.parts}
    examples = {f"examples/{p.name}" for p in (SPACE / "examples").iterdir() if p.suffix == ".jpg"} | {
        "examples/README.md"}
    return ({"README.md", "app.py", "backends.py", "render.py", "requirements.txt", "model/trouble.mar",
             f"wheels/{wheel_name}"} | trouble | examples)


def test_push_creates_the_space_and_uploads_exactly_the_listed_files(fake_hub, model_file, tmp_path):
    # A compiled module in space/__pycache__ must not go up.
    import py_compile
    py_compile.compile(str(SPACE / "render.py"), doraise=True)
    assert list((SPACE / "__pycache__").glob("render.*.pyc"))
    wheel = tmp_path / "mmcv-2.1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as stand_in:  # a wheel is a zip file
        stand_in.writestr("mmcv/__init__.py", "")
    args = ("--space", SPACE_ID, "--model", str(model_file), "--mmcv-wheel", str(wheel))

    # Files git does not track (a patient's photo dropped into examples/, a scratch module) stay here.
    strays = [SPACE / "examples" / "patient_private.png", SPACE / "examples" / "patient.jpg",
              REPO / "trouble" / "scratch_notes.py"]
    try:
        for stray in strays:
            stray.write_bytes(b"not for the public")
        dry = run_push(*args, "--dry-run", endpoint=fake_hub.base)
    finally:
        for stray in strays:
            stray.unlink()
    assert dry.returncode == 0, dry.stderr
    assert fake_hub.requests == [], "the dry run must not contact the Hub"
    planned = listed_files(dry.stdout)
    assert planned == expected_gradio_files(wheel.name)
    assert "left out, not committed to git (commit them to upload them): examples/patient.jpg, " \
           "trouble/scratch_notes.py" in dry.stderr

    result = run_push(*args, endpoint=fake_hub.base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{fake_hub.base}/spaces/{SPACE_ID}" in result.stdout

    # create_repo: a Gradio Space under the given name.
    method, path, headers, body = fake_hub.requests[0]
    assert (method, path) == ("POST", "/api/repos/create")
    created = json.loads(body)
    assert {key: created.get(key) for key in ("name", "organization", "type", "sdk")} == {
        "name": "skin-trouble", "organization": "someone", "type": "space", "sdk": "gradio"}
    # Every request went to the fake Hub with the token; none was refused or unknown to it.
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in fake_hub.requests)
    assert not [p for _, p, _, _ in fake_hub.requests
                if not re.match(r"/api/(repos/create|validate-yaml|spaces/someone/skin-trouble/(preupload|commit)/main)",
                                p)]
    assert fake_hub.validated_readmes == [(SPACE / "README.md").read_text()]

    # The commit holds exactly the dry run's list, with the local files' bytes.
    assert set(fake_hub.committed) == planned
    assert not any("__pycache__" in p or p.endswith(".pyc") or Path(p).name.startswith(".")
                   for p in fake_hub.committed)
    assert fake_hub.committed["model/trouble.mar"] == model_file.read_bytes()
    assert fake_hub.committed[f"wheels/{wheel.name}"] == wheel.read_bytes()
    for name in ("app.py", "render.py", "backends.py", "README.md"):
        assert fake_hub.committed[name] == (SPACE / name).read_bytes()
    assert fake_hub.committed["trouble/inference.py"] == (REPO / "trouble/inference.py").read_bytes()
    assert not any(TOKEN.encode() in content for content in fake_hub.committed.values())

    # requirements.txt points mmcv at the uploaded wheel; everything else stays pinned.
    requirements = fake_hub.committed["requirements.txt"].decode().splitlines()
    wanted = f"mmcv @ {fake_hub.base}/spaces/{SPACE_ID}/resolve/main/wheels/{wheel.name}"
    assert wanted in requirements and "mmcv==2.1.0" not in requirements
    packages = [line for line in requirements if line and not line.startswith(("#", "--", "mmcv @"))]
    assert packages and all("==" in line for line in packages), packages


def test_private_makes_an_existing_public_space_private_before_uploading(fake_hub, model_file):
    """--private on a Space that exists: create_repo leaves its visibility as it is, so the push sets
    it, before any file goes up (the examples and the model would have gone to a public Space)."""
    fake_hub.existing[SPACE_ID] = "public"
    result = run_push("--space", SPACE_ID, "--model", str(model_file), "--private", endpoint=fake_hub.base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake_hub.existing[SPACE_ID] == "private"
    calls = [(method, path.split("?")[0]) for method, path, _, _ in fake_hub.requests]
    settings_call = calls.index(("PUT", f"/api/spaces/{SPACE_ID}/settings"))
    assert settings_call < calls.index(("POST", f"/api/spaces/{SPACE_ID}/commit/main"))
    assert "The Space is private" in result.stdout
    assert "model/trouble.mar" in fake_hub.committed

    # Without --private an existing Space keeps its visibility: nothing asks to change it.
    fake_hub.requests.clear()
    fake_hub.existing[SPACE_ID] = "public"
    again = run_push("--space", SPACE_ID, "--model", str(model_file), endpoint=fake_hub.base)
    assert again.returncode == 0, again.stdout + again.stderr
    assert fake_hub.existing[SPACE_ID] == "public"
    assert not [path for method, path, _, _ in fake_hub.requests if method == "PUT"]


def test_readme_header_is_a_valid_gradio_space_card():
    text = (SPACE / "README.md").read_text()
    header, body = push.read_readme_header(text)
    assert header["sdk"] == "gradio"
    assert str(header["sdk_version"]) == "6.31.0" and isinstance(header["sdk_version"], str)
    assert header["app_file"] == "app.py" and (SPACE / header["app_file"]).is_file()
    assert str(header["python_version"]) == "3.11" and isinstance(header["python_version"], str)
    for key in ("title", "emoji", "license"):
        assert header.get(key), key
    assert len(header.get("short_description", "")) <= 60  # the Hub's limit
    import gradio

    assert gradio.__version__ == header["sdk_version"], "the Space would run another Gradio than the tests"
    for words in ("local mode", "TROUBLE_MODEL_REPO", "hf_hub_download", "model/trouble.mar", "Model card",
                  "MMCV_WITH_OPS=1 pip install --no-build-isolation mmcv==2.1.0"):
        assert words in body, words


def test_docker_space_lists_everything_its_dockerfile_copies(model_file):
    result = run_push("--space", SPACE_ID, "--sdk", "docker", "--model", str(model_file), "--dry-run", token=None)
    assert result.returncode == 0, result.stderr
    planned = listed_files(result.stdout)
    dockerfile = (SPACE / "docker" / "Dockerfile").read_text()
    sources = [word for line in dockerfile.splitlines() if line.startswith("COPY")
               for word in line.split()[1:-1] if not word.startswith("--")]
    assert sources, "the Dockerfile copies files"
    for source in sources:
        # The model is built (`make train`), not kept in the source tree; push.py takes it from --model.
        if source != "model_store/trouble.mar":
            assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
        assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in planned), source
    assert "Dockerfile" in planned and "space/docker/start.sh" in planned
    assert 'CMD ["bash", "space/docker/start.sh"]' in dockerfile
    header, _ = push.read_readme_header(push.docker_readme().decode())
    assert header["sdk"] == "docker" and header["app_port"] == 7860
    assert "sdk_version" not in header and header["title"]


def test_start_script_is_valid_bash_and_matches_the_local_setup():
    start = SPACE / "docker" / "start.sh"
    assert subprocess.run(["bash", "-n", str(start)], capture_output=True).returncode == 0
    text = start.read_text()
    assert "torchserve --start --ncs --ts-config config.properties --models trouble=trouble.mar" in text
    assert "/ping" in text and "space/app.py" in text
    config = (REPO / "config.properties").read_text()
    assert "model_store=model_store" in config and "inference_address=http://127.0.0.1:8080" in config


def test_push_refuses_secrets_and_bad_tokens(fake_hub, model_file):
    with pytest.raises(push.PushError, match="looks like a secret"):
        push.check_files({".env": b"HF_TOKEN=x"}, None)
    with pytest.raises(push.PushError, match="looks like a secret"):
        push.check_files({"key_file.json": b"{}"}, None)
    with pytest.raises(push.PushError, match="contains the Hugging Face token"):
        push.check_files({"notes.txt": f"token {TOKEN}".encode()}, TOKEN)

    result = run_push("--space", SPACE_ID, "--model", str(model_file), endpoint=fake_hub.base, token="hf_wrong")
    assert result.returncode == 1
    assert "the Hub refused (HTTP 401)" in result.stderr and "HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert fake_hub.committed == {}

    missing = run_push("--space", SPACE_ID, "--model", "no/such/trouble.mar", "--dry-run")
    assert missing.returncode == 2 and "no/such/trouble.mar not found" in missing.stderr
    not_a_mar = model_file.with_name("metrics.json")
    not_a_mar.write_text("{}")
    wrong = run_push("--space", SPACE_ID, "--model", str(not_a_mar), "--dry-run")
    assert wrong.returncode == 2 and "is not a .mar archive" in wrong.stderr
    # From an audit: an empty zip went up as the model, and any file as the mmcv wheel.
    empty = model_file.with_name("empty.mar")
    zipfile.ZipFile(empty, "w").close()
    wrong = run_push("--space", SPACE_ID, "--model", str(empty), "--dry-run")
    assert wrong.returncode == 2 and "lacks config.py, model-config.yaml, model.pth" in wrong.stderr
    not_a_wheel = model_file.with_name("not a wheel.whl")
    not_a_wheel.write_text("README")
    wrong = run_push("--space", SPACE_ID, "--model", str(model_file), "--mmcv-wheel", str(not_a_wheel), "--dry-run")
    assert wrong.returncode == 2 and "is not an mmcv wheel" in wrong.stderr
    assert run_push("--space", "just-a-name", "--dry-run").returncode == 2  # as every bad option
    bad_name = run_push("--space", "me/bad name!", "--dry-run")  # the Hub's rule: it had crashed the real push
    assert bad_name.returncode == 2 and "Repo id must use alphanumeric chars" in bad_name.stderr
    # No token at all: said before anything is sent (the Hub's 401 came after the upload began).
    no_token = run_push("--space", SPACE_ID, "--model", str(model_file), endpoint=fake_hub.base, token=None)
    assert no_token.returncode == 2 and "no Hugging Face token: set HF_TOKEN" in no_token.stderr
    assert fake_hub.committed == {} and "Traceback" not in no_token.stderr

    from tests.conftest import free_port
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = run_push("--space", SPACE_ID, "--model", str(model_file), endpoint=closed)
    assert unreachable.returncode == 1 and f"could not reach the Hub at {closed}" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_a_copy_without_git_pushes_what_it_lists_and_says_so(model_file, tmp_path):
    """Outside a git checkout nothing can say which files are committed: the push says so, naming
    why, instead of uploading every file of examples/ without a word."""
    copy = tmp_path / "copy"
    for folder in ("space", "trouble"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, str(copy / "space" / "push.py"), "--space", SPACE_ID, "--model",
                             str(model_file), "--dry-run"], cwd=copy, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "warning: git cannot say which files it tracks (" in result.stderr and "not a git repository" in result.stderr
    assert "examples/README.md" in result.stdout


def test_an_example_photo_changed_since_its_commit_does_not_go_public(tmp_path):
    """From a review: an example photo replaced after its commit went up as it was on disk, with at most
    a warning; a file staged with `git add` but not committed went up too."""
    example = next((SPACE / "examples").glob("*.jpg"))
    original = example.read_bytes()
    try:
        example.write_bytes(original + b"\0")  # another photo under the committed one's name
        result = run_push("--space", SPACE_ID, "--model", str(REPO / "model_store" / "trouble.mar"), "--dry-run",
                          endpoint="http://127.0.0.1:9")
    finally:
        example.write_bytes(original)
    assert result.returncode == 2 and f"examples/{example.name} differ from their commit" in result.stderr, \
        result.stderr
