"""The Docker image, built and run for real: podman builds the Dockerfile on a bare Debian
base that debootstrap makes (the Dockerfile has to install Python itself there), and
buildah runs commands in the image, as `podman run` cannot on hosts where crun may not
set rlimits. Needs root, podman, buildah and debootstrap; with FASHIONBENCH_REQUIRE_DOCKER=1
(CI) their absence fails the module instead of skipping it. buildah run does not start the
image's entrypoint, so the tests call it (fashionbench-entrypoint) as the image would."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import stop_group

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("podman", "buildah", "debootstrap")
# Unique per run: two checkouts testing at once never share an image or a container.
TAG = f"fashionbench-test-{uuid.uuid4().hex[:8]}"
CA_IN_BUILD = "/run/fashionbench-build-ca.pem"  # not /etc/ssl/...: apt would rewrite that


def tool(name: str) -> str | None:
    """The program's path; debootstrap lives in /usr/sbin, which a PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def require_tools() -> None:
    missing = [name for name in TOOLS if tool(name) is None]
    problem = f"{', '.join(missing)} not installed" if missing else None
    if problem is None and os.geteuid() != 0:
        problem = "not root (debootstrap and podman's chroot isolation need it)"
    if problem:
        message = f"the Docker image tests cannot run: {problem} (Debian: apt-get install {' '.join(TOOLS)})"
        if os.environ.get("FASHIONBENCH_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)


def run(*argv: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def host_pip_settings() -> dict[str, str]:
    """pip's settings on this host (``pip config list``: files and PIP_* variables), the
    variables winning over the files as they do in pip."""
    listed = run(sys.executable, "-m", "pip", "config", "list").stdout
    rank = {":env:": 0, "site": 1, "user": 2, "global": 3}
    found: dict[str, tuple[int, str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        scope, _, name = key.rpartition(".")
        order = rank.get(scope, 4)
        if name and (name not in found or order < found[name][0]):
            found[name] = (order, ast.literal_eval(value))
    return {name: value for name, (_, value) in found.items()}


def local_path(location: str) -> Path | None:
    path = Path(location.removeprefix("file://")) if location.startswith(("file://", "/")) else None
    return path if path is not None and path.exists() else None


def build_sources() -> tuple[list[str], list[str]]:
    """Build arguments and mounts that install what this host's pip installs: its wheel
    folders (find-links) and local indexes mounted at the same paths, the only sources
    when there are some (offline, and no download of what is on disk); otherwise PyPI
    over HTTPS with this host's CA bundle. torch comes from a find-links folder holding
    a CPU wheel, else from PyTorch's CPU index (the Dockerfile's default)."""
    settings = host_pip_settings()
    find_links = [p for p in map(local_path, settings.get("find-links", "").split()) if p]
    indexes = [u for u in [settings.get("index-url", ""), *settings.get("extra-index-url", "").split()]
               if local_path(u)]
    args, mounts = [], []
    if find_links:
        args.append("PIP_FIND_LINKS=" + " ".join(map(str, find_links)))
        mounts += [f"{p}:{p}:ro" for p in find_links]
        if any(p.glob("torch-*+cpu-*.whl") for p in find_links if p.is_dir()):
            args.append("TORCH_INDEX=")
    if indexes:
        args += [f"PIP_INDEX_URL={indexes[0]}", "PIP_EXTRA_INDEX_URL=" + " ".join(indexes[1:])]
        for url in indexes:
            # A local "simple" index's pages link to ../../files/...: mount the folder above it.
            path = local_path(url)
            top = path.parent if path.name == "simple" else path
            mounts.append(f"{top}:{top}:ro")
    ca = settings.get("cert") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    if Path(ca).is_file():
        args.append(f"PIP_CERT={CA_IN_BUILD}")
        mounts.append(f"{ca}:{CA_IN_BUILD}:ro")
    return args, sorted(set(mounts), key=mounts.index)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image, built once for the module on a debootstrapped Debian bookworm (no
    Python in it), removed afterwards with its base."""
    require_tools()
    if not list((ROOT / "notebooks").glob("*.ipynb")):
        pytest.fail("notebooks/ holds no notebook: the image serves that folder")
    work = tmp_path_factory.mktemp("docker")
    base, built = f"localhost/{TAG}-base", f"localhost/{TAG}"
    started = time.monotonic()
    root = work / "rootfs"
    made = run(tool("debootstrap"), "--variant=minbase", "bookworm", str(root), timeout=600)
    assert made.returncode == 0, f"debootstrap failed:\n{made.stdout[-3000:]}{made.stderr[-3000:]}"
    # The downloaded .debs stay out of the image (30 MB).
    tar = subprocess.Popen(["tar", "-C", str(root), "--exclude=./var/cache/apt/archives/*.deb", "-c", "."],
                           stdout=subprocess.PIPE)
    imported = run("podman", "import", "-", base, stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(root)
    try:
        assert imported.returncode == 0, imported.stderr
        args, mounts = build_sources()
        log = work / "build.log"
        # --layers=false: one commit, no intermediate images to clean up; chroot isolation
        # and the host's network, where podman cannot start a runtime.
        argv = ["podman", "build", "--isolation", "chroot", "--layers=false", "--pull=never", "-t", built,
                "--build-arg", f"BASE={base}", *[a for arg in args for a in ("--build-arg", arg)],
                *[a for m in mounts for a in ("-v", m)], str(ROOT)]
        with log.open("w") as out:
            status = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1500).returncode
        text = log.read_text()
        assert status == 0, f"podman build failed ({' '.join(argv)}):\n{text[-4000:]}"
        print(f"image {built} built in {time.monotonic() - started:.0f} s (base included)")
        yield built
    finally:
        run("podman", "rmi", "--force", built, base)


@contextmanager
def container(image: str):
    """A working container of the image (buildah from), removed on the way out."""
    name = f"{TAG}-{uuid.uuid4().hex[:6]}"
    made = run("buildah", "from", "--pull=never", "--name", name, image)
    assert made.returncode == 0, made.stderr
    try:
        yield name
    finally:
        run("buildah", "rm", name)


def inside(name: str, *argv: str, env: dict | None = None, mounts: tuple[str, ...] = (),
           timeout: float = 300) -> subprocess.CompletedProcess:
    """``argv`` run in the container through the image's entrypoint, as `docker run IMAGE
    ARGV` would."""
    options = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    options += [a for m in mounts for a in ("-v", m)]
    return run("buildah", "run", "--isolation", "chroot", *options, name, "--", "fashionbench-entrypoint", *argv,
               timeout=timeout)


@pytest.fixture(scope="module")
def box(image):
    with container(image) as name:
        yield name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter(image: str, tmp_path: Path, env: dict):
    """Jupyter Lab started by the entrypoint with no arguments, on a free port (buildah run
    shares the host's network), until it prints its URLs; yields (port, log text)."""
    port = free_port()
    log = tmp_path / "jupyter.log"
    with container(image) as name, log.open("w") as out:
        options = [a for k, v in {**env, "JUPYTER_PORT": str(port)}.items() for a in ("-e", f"{k}={v}")]
        # A session of its own: the server and buildah's helpers are stopped as one group.
        server = subprocess.Popen(["buildah", "run", "--isolation", "chroot", *options, name, "--",
                                   "fashionbench-entrypoint"], stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            # Jupyter Server logs "... is running at:", its URLs, then this line: the URLs
            # are all in the log once it is.
            while "Use Control-C to stop this server" not in log.read_text():
                assert server.poll() is None, f"Jupyter exited {server.returncode}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"Jupyter did not start:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
            # Then until its port takes connections: once (in CI, under load) a request right
            # after that line was refused.
            while not accepts(port):
                assert server.poll() is None, f"Jupyter exited {server.returncode}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"Jupyter's port {port} never took a connection"
                time.sleep(0.5)
            yield port, log.read_text()
        finally:
            stop_group(server, timeout=20)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


def status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_jupyter_serves_the_notebooks_with_the_given_token(image, tmp_path):
    token = uuid.uuid4().hex
    with jupyter(image, tmp_path, {"JUPYTER_TOKEN": token}) as (port, log):
        api = f"http://127.0.0.1:{port}/api"
        assert status(f"{api}/status") == 403
        assert status(f"{api}/contents", token="wrong") == 403
        assert status(f"{api}/status", token=token) == 200
        assert status(f"{api}/contents?token={token}") == 200
        request = urllib.request.Request(f"{api}/contents", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            listed = {item["name"] for item in json.load(resp)["content"]}
        assert {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} <= listed
        assert "Serving notebooks from local directory: /work/notebooks" in log
        assert f"0.0.0.0:{port}" in log  # every interface: what `-p 8888:8888` reaches


def test_jupyter_without_a_token_prints_a_random_one(image, tmp_path):
    with jupyter(image, tmp_path, {}) as (port, log):
        tokens = set(re.findall(rf"http://127\.0\.0\.1:{port}/lab\?token=([0-9a-f]+)", log))
        assert len(tokens) == 1, log[-2000:]
        token = tokens.pop()
        assert len(token) >= 32
        assert status(f"http://127.0.0.1:{port}/api/status") == 403
        assert status(f"http://127.0.0.1:{port}/api/status", token=token) == 200


def test_an_empty_token_is_refused(box):
    result = inside(box, env={"JUPYTER_TOKEN": ""})
    assert result.returncode == 2
    assert "JUPYTER_TOKEN is empty; Jupyter Lab is never served without a token" in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_run_as_a_user_not_root(box):
    assert inside(box, "id", "-u").stdout.strip() != "0"
    helped = inside(box, "fashionbench", "--help")
    assert helped.returncode == 0 and "train" in helped.stdout


def test_data_from_a_read_only_mount(box, data_dir):
    result = inside(box, "fashionbench", "data", mounts=(f"{data_dir}:/data:ro",))
    assert result.returncode == 0, result.stderr
    assert "Fashion-MNIST at /data (all MD5 sums verified)" in result.stdout


def test_data_downloaded_into_the_empty_data_folder(box, data_dir):
    """The first use fills /data as the image's user (a mirror of file:// URLs standing in
    for the network)."""
    result = inside(box, "fashionbench", "data", env={"FASHIONBENCH_MIRRORS": "file:///mirror"},
                    mounts=(f"{data_dir}:/mirror:ro",))
    assert result.returncode == 0, result.stderr
    assert "downloading file:///mirror/train-images-idx3-ubyte.gz" in result.stderr
    assert "Fashion-MNIST at /data (all MD5 sums verified)" in result.stdout


def test_training_inside_writes_its_run(box, data_dir, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)  # the image's user, not root, writes into it
    result = inside(box, "fashionbench", "train", "basic_cnn", "--epochs", "1", "--train-subset", "500",
                    "--name", "docker", "--set", "data.test_subset=2000",
                    mounts=(f"{data_dir}:/data:ro", f"{runs}:/work/runs"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "results: runs/docker/summary.json" in result.stdout
    summary = json.loads((runs / "docker" / "summary.json").read_text())
    assert 0 < summary["test_acc"] <= 1
    print("".join(f"\n  {line}" for line in result.stdout.splitlines() if "test acc" in line))
