"""Create or update the Hugging Face Space and upload the app to it (`make space SPACE=user/name`).

    python space/push.py --space user/name --model model_store/trouble.mar --mmcv-wheel wheels/mmcv-...whl
    python space/push.py --space user/name --model model_store/trouble.mar --dry-run   # list, upload nothing
    python space/push.py --space user/name --model model_store/trouble.mar --sdk docker

Token: HF_TOKEN (else the one `hf auth login` saved). Hub address: HF_ENDPOINT (default the public Hub).
The Space is created if missing (create_repo with exist_ok) and, with --private, made private; then
the files are uploaded in one upload_folder call from a staging folder that holds exactly the listed
files, so nothing else (caches, __pycache__, keys, .env files) can go up.

Gradio-SDK Space (default; the app runs the model in process, "local mode"):
    README.md, app.py, backends.py, render.py, requirements.txt, examples/  from space/
    trouble/**.py                                                            the shared library
    model/trouble.mar                                                        with --model
    wheels/mmcv-*.whl                                                        with --mmcv-wheel PATH
Docker Space (--sdk docker; TorchServe and the app in one container):
    Dockerfile (space/docker/Dockerfile), README.md with `sdk: docker`, and the repository files
    the Dockerfile copies, at the same paths: requirements.txt, constraints.txt, config.properties,
    trouble/, space/ (app files, examples, docker/start.sh), model_store/trouble.mar (--model, required).
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

SPACE_DIR = Path(__file__).resolve().parent
REPO = SPACE_DIR.parent
APP_FILES = ("app.py", "backends.py", "render.py", "requirements.txt")
DOCKER_APP_PORT = 7860
DEFAULT_ENDPOINT = "https://huggingface.co"
# Never uploaded, whatever else changes: refused by name before anything leaves this machine.
SECRET_NAME_PATTERNS = (".env", ".env.*", "*.pem", "*.key", "*.p12", "key_file.json", ".netrc", "id_rsa*",
                        "*token*", "*secret*", "*credentials*")


class PushError(Exception):
    pass


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def example_files() -> list[Path]:
    """The example photos the app shows (examples/*.jpg) and their README (credits): nothing else
    in the folder, such as a photo dropped there that the app would never show, yet make public."""
    folder = SPACE_DIR / "examples"
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix == ".jpg" or p.name == "README.md"))


def without_untracked(files: dict) -> tuple[dict, list, str]:
    """files without the library's and the examples' files that are not committed (a scratch file, a
    patient's photo; one only staged with `git add` too), the paths left out, and why git could not
    tell ("" when it could; then everything is kept, and the caller says so)."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "-z", "--name-only", "HEAD", "--",
                                 "trouble", "space/examples"], capture_output=True, check=True).stdout
    except OSError as error:  # no git on this machine
        return files, [], str(error)
    except subprocess.CalledProcessError as error:  # not a checkout, or one git will not read
        return files, [], error.stderr.decode(errors="replace").strip() or f"git exited with {error.returncode}"
    tracked = {REPO / name for name in listed.decode(errors="surrogateescape").split("\0") if name}

    def untracked(source) -> bool:
        return (isinstance(source, Path) and source not in tracked
                and (source.is_relative_to(REPO / "trouble") or source.parent == SPACE_DIR / "examples"))

    left_out = sorted(path_in_repo for path_in_repo, source in files.items() if untracked(source))
    return {name: source for name, source in files.items() if name not in left_out}, left_out, ""


def changed_since_commit(files: dict) -> list:
    """The paths in the Space of the files to upload that differ from the last commit: they would go up
    as they are now, not as committed."""
    try:
        changed = subprocess.run(["git", "-C", str(REPO), "diff", "--name-only", "-z", "HEAD", "--", "trouble",
                                  "space"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # said already by without_untracked
        return []
    changed = {REPO / name for name in changed.decode(errors="surrogateescape").split("\0") if name}
    return sorted(path_in_repo for path_in_repo, source in files.items() if source in changed)


def gradio_space_files(model: Path | None, mmcv_wheel: str | None, space: str, endpoint: str) -> dict:
    """{path in the Space: local Path, or bytes for a generated file}."""
    files = {"README.md": SPACE_DIR / "README.md"}
    files.update({name: SPACE_DIR / name for name in APP_FILES})
    files.update({f"examples/{p.name}": p for p in example_files()})
    files.update({f"trouble/{p.relative_to(REPO / 'trouble').as_posix()}": p for p in python_files(REPO / "trouble")})
    if model is not None:
        files["model/trouble.mar"] = model
    if mmcv_wheel:
        if mmcv_wheel.startswith(("https://", "http://")):
            wheel_url = mmcv_wheel
        else:
            wheel = Path(mmcv_wheel)
            files[f"wheels/{wheel.name}"] = wheel
            wheel_url = f"{endpoint}/spaces/{space}/resolve/main/wheels/{wheel.name}"
        files["requirements.txt"] = requirements_with_mmcv(wheel_url)
    return files


def docker_space_files(model: Path | None) -> dict:
    if model is None:
        raise PushError("a Docker Space needs the model in the image: pass --model model_store/trouble.mar")
    files = {"README.md": docker_readme(), "Dockerfile": SPACE_DIR / "docker" / "Dockerfile",
             "space/docker/start.sh": SPACE_DIR / "docker" / "start.sh",
             "space/README.md": SPACE_DIR / "README.md"}
    for name in ("requirements.txt", "constraints.txt", "config.properties"):
        files[name] = REPO / name
    files.update({f"space/{name}": SPACE_DIR / name for name in APP_FILES if name != "requirements.txt"})
    files.update({f"space/examples/{p.name}": p for p in example_files()})
    files.update({f"trouble/{p.relative_to(REPO / 'trouble').as_posix()}": p for p in python_files(REPO / "trouble")})
    files["model_store/trouble.mar"] = model
    return files


def read_readme_header(text: str) -> tuple[dict, str]:
    """README.md → (its YAML header as a dict, the text after it)."""
    if not text.startswith("---\n"):
        raise PushError("space/README.md must start with the Space's YAML header (---)")
    header, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(header), body


def docker_readme() -> bytes:
    """space/README.md with the header of a Docker Space: sdk docker, the app's port, no gradio keys."""
    header, body = read_readme_header((SPACE_DIR / "README.md").read_text())
    for key in ("sdk_version", "app_file", "python_version"):
        header.pop(key, None)
    header["sdk"] = "docker"
    header["app_port"] = DOCKER_APP_PORT
    text = "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n" + body
    return text.encode()


def requirements_with_mmcv(wheel_url: str) -> bytes:
    lines = (SPACE_DIR / "requirements.txt").read_text().splitlines()
    replaced = [f"mmcv @ {wheel_url}" if line.strip() == "mmcv==2.1.0" else line for line in lines]
    if replaced == lines:
        raise PushError("space/requirements.txt has no 'mmcv==2.1.0' line to point at the wheel")
    return ("\n".join(replaced) + "\n").encode()


def check_files(files: dict, token: str | None):
    """Refuse missing files, names that look like secrets, and any file holding the token."""
    for path_in_repo, source in files.items():
        name = Path(path_in_repo).name
        if any(fnmatch.fnmatch(name.lower(), pattern) for pattern in SECRET_NAME_PATTERNS):
            raise PushError(f"refusing to upload {path_in_repo}: the name looks like a secret")
        if "__pycache__" in path_in_repo or (name.startswith(".") and name != ".gitattributes"):
            raise PushError(f"refusing to upload {path_in_repo}: a cache or hidden file")
        if isinstance(source, Path):
            if not source.is_file():
                needed = "" if str(source).endswith(path_in_repo) else f" (to upload as {path_in_repo})"
                raise PushError(f"{source} not found{needed}")
            content = source.read_bytes()
            if path_in_repo.endswith(".mar") and not zipfile.is_zipfile(source):
                raise PushError(f"{source} is not a .mar archive (a zip file), so it cannot be {path_in_repo}")
            if path_in_repo.endswith(".mar"):
                with zipfile.ZipFile(source) as archive:  # the Space would start without a model
                    lacking = {"model-config.yaml", "model.pth", "config.py"} - set(archive.namelist())
                if lacking:
                    raise PushError(f"{source} lacks {', '.join(sorted(lacking))}: it is not a model archive made "
                                    f"by train.archive")
            if path_in_repo.startswith("wheels/") and not (re.fullmatch(r"mmcv-[\w.+]+-[\w.-]+\.whl", name)
                                                           and zipfile.is_zipfile(source)):
                raise PushError(f"{source} is not an mmcv wheel (mmcv-<version>-<tags>.whl, a zip file)")
        else:
            content = source
        if token and token.encode() in content:
            raise PushError(f"refusing to upload {path_in_repo}: it contains the Hugging Face token")


def stage(files: dict, folder: Path):
    for path_in_repo, source in files.items():
        target = folder / path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_bytes(source)


def size_of(source) -> int:
    return source.stat().st_size if isinstance(source, Path) else len(source)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, help="the Space's id, user/name (or org/name)")
    parser.add_argument("--model", help="the .mar to upload (model/trouble.mar in a Gradio Space); without it the "
                                        "Space needs TROUBLE_MODEL_REPO set in its variables")
    parser.add_argument("--mmcv-wheel", help="a prebuilt mmcv 2.1.0 wheel (cp311, torch 2.13 CPU) to upload, or the "
                                             "https address of one; the Gradio Space's requirements point at it")
    parser.add_argument("--sdk", choices=("gradio", "docker"), default="gradio")
    parser.add_argument("--private", action="store_true",
                        help="make the Space private, a new one or one that exists, before anything is uploaded")
    parser.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; upload nothing")
    args = parser.parse_args(argv)
    if args.sdk == "docker" and args.mmcv_wheel:
        parser.error("--mmcv-wheel is for the Gradio Space: the Docker image compiles mmcv itself")

    from huggingface_hub import get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if args.space.count("/") != 1 or not all(args.space.split("/")):
        parser.error(f"--space must look like user/name, got {args.space!r}")
    try:  # the Hub's own rule, checked before a dry run says all is well
        validate_repo_id(args.space)
    except HFValidationError as error:
        parser.error(f"--space {args.space!r}: {error}")
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = os.environ.get("HF_TOKEN") or get_token()  # else the one `hf auth login` saved
    if token is None and not args.dry_run:
        print("error: no Hugging Face token: set HF_TOKEN to a write token (https://huggingface.co/settings/tokens) "
              "or run `hf auth login`", file=sys.stderr)
        return 2
    model = Path(args.model) if args.model else None
    try:
        if args.sdk == "docker":
            files = docker_space_files(model)
        else:
            files = gradio_space_files(model, args.mmcv_wheel, args.space, endpoint)
        files, left_out, untold = without_untracked(files)
        changed = changed_since_commit(files)
        photos = [name for name in changed if name.startswith("examples/")]
        if photos:  # a photo made public: only as committed, where its consent and credit were checked
            raise PushError(f"{', '.join(photos)} differ from their commit: commit them, or restore them with "
                            f"`git checkout space/examples`, before they go public")
        check_files(files, token)
    except PushError as error:  # what was asked cannot be uploaded: exit 2, as for a bad option
        print(f"error: {error}", file=sys.stderr)
        return 2

    print(f"{'Would upload' if args.dry_run else 'Uploading'} {len(files)} files to the {args.sdk} Space "
          f"{args.space} at {endpoint}:")
    for path_in_repo in sorted(files):
        print(f"  {path_in_repo}  ({size_of(files[path_in_repo])} bytes)")
    if left_out:
        print(f"note: left out, not committed to git (commit them to upload them): {', '.join(left_out)}",
              file=sys.stderr)
    if changed:
        print(f"warning: changed since the last commit, uploaded as they are now: {', '.join(changed)}",
              file=sys.stderr)
    if untold:  # a copy without git: what is in trouble/ and examples/ goes up as it is
        print(f"warning: git cannot say which files it tracks ({untold}): every file listed above goes up; "
              f"check that no photo in space/examples/ is one to keep private", file=sys.stderr)
    if args.private and args.mmcv_wheel and not args.mmcv_wheel.startswith(("https://", "http://")):
        # requirements.txt points pip at the wheel's address in the Space itself (untested on a private one)
        print("warning: a private Space's build may not be let download the wheel from the Space itself "
              "without a token: if the build stops at mmcv, give --mmcv-wheel a public https:// address",
              file=sys.stderr)
    if args.sdk == "gradio" and not args.mmcv_wheel:
        print("warning: no --mmcv-wheel: the Space's build will stop at mmcv, which pip cannot compile "
              "there (see space/requirements.txt)", file=sys.stderr)
    if model is None:
        print("warning: no --model: set TROUBLE_MODEL_REPO in the Space's variables", file=sys.stderr)
    if args.dry_run:
        return 0

    import httpx2  # the HTTP library huggingface_hub 2.x is built on (not httpx)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="trouble-space-") as staging:
        stage(files, Path(staging))
        try:
            url = api.create_repo(args.space, repo_type="space", space_sdk=args.sdk, exist_ok=True,
                                  private=args.private or None)
            if args.private:  # create_repo leaves an existing Space's visibility as it was
                api.update_repo_settings(args.space, repo_type="space", private=True)
                print("The Space is private.")
            commit = api.upload_folder(repo_id=args.space, repo_type="space", folder_path=staging,
                                       commit_message="Update the app (space/push.py)")
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            hint = " Check HF_TOKEN: it needs write access." if status in (401, 403) else ""
            print(f"error: the Hub refused (HTTP {status}): {error}.{hint}", file=sys.stderr)
            return 1
        except (httpx2.HTTPError, OSError) as error:
            print(f"error: could not reach the Hub at {endpoint}: {error}", file=sys.stderr)
            return 1
    print(f"Space: {url}\nCommit: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
