"""Build the Docker image generated code runs in, offline by default.

Two routes, both ending in an image with python3 + pytest, a non-root user ``sandbox`` (uid/gid 1000, the uid
the sandbox runs code as) and empty ``/work`` and ``/tmp`` mount points:

* offline (default): ``debootstrap --variant=minbase --include=python3,python3-pytest bookworm`` into a temp
  dir, add the user, drop caches, pack the tree with tar and ``docker import`` it. Needs root (debootstrap
  creates device nodes and chowns files) and a reachable Debian mirror, but no image registry. ~75-120 s.
* online (``base="python:3.12-slim"`` or any image with python3 and pip): a three-line Dockerfile that adds
  pytest and the user. Needs a registry to pull the base from.

Deliberately left out: caching debootstrap's downloads between builds, other distributions, and pushing the
image anywhere. ``python -m rcp.sandbox build-image`` is the entry point; this module only logs.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import docker.errors
import docker.utils
import requests.exceptions

from rcp.errors import DockerUnavailableError, SandboxError

logger = logging.getLogger(__name__)

DEFAULT_TAG = "rcp-sandbox:py3"
SUITE = "bookworm"  # Debian 12: the release this project is developed and measured on
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ["python3", "python3-pytest"]
SANDBOX_UID = 1000  # rcp.sandbox runs code as this uid:gid; the image names it so `id`/`ls -l` look normal
IMAGE_LABEL = "rcp.sandbox.image"
# Image-level defaults; rcp.sandbox sets its own environment per run, these only make `docker run IMAGE` sane.
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    f"USER {SANDBOX_UID}:{SANDBOX_UID}",
    "WORKDIR /work",
    f"LABEL {IMAGE_LABEL}=1",
    'CMD ["python3"]',
]
DOCKERFILE = f"""\
FROM {{base}}
RUN pip install --no-cache-dir pytest \\
 && (getent group {SANDBOX_UID} || groupadd -g {SANDBOX_UID} sandbox) \\
 && (getent passwd {SANDBOX_UID} \\
     || useradd -u {SANDBOX_UID} -g {SANDBOX_UID} -d /work -M -s /usr/sbin/nologin sandbox) \\
 && mkdir -p /work && chown {SANDBOX_UID}:{SANDBOX_UID} /work && chmod 0700 /work
ENV PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
LABEL {IMAGE_LABEL}=1
USER {SANDBOX_UID}:{SANDBOX_UID}
WORKDIR /work
"""
# Importing a 260 MB tar or running pip in a build can outlast docker-py's default 60 s read timeout.
BUILD_API_TIMEOUT = 1800


def docker_client(timeout: int = 60) -> docker.DockerClient:
    """A client that answered a ping, or DockerUnavailableError with one line that says how to start Docker."""
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        if client is not None:
            client.close()
        # docker-py's messages span lines and nest the socket error; keep one line for the user.
        reason = " ".join(str(e).split())
        if len(reason) > 160:
            reason = reason[:157] + "..."
        if "Permission denied" in reason:
            raise DockerUnavailableError(f"Docker is running but this user may not use it ({reason}); run as root or "
                                         "add the user to the `docker` group (`sudo usermod -aG docker $USER`)") from e
        raise DockerUnavailableError(
            f"Docker is not reachable ({reason}); start it with `sudo dockerd &` or `sudo systemctl start docker`, "
            "or run `make test` as root on Debian to install it") from e


def image_exists(tag: str, client: docker.DockerClient | None = None) -> bool:
    """True if the local engine has an image called ``tag``. Raises DockerUnavailableError if Docker is down."""
    own = client is None
    client = client or docker_client()
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as e:
        raise SandboxError(f"cannot inspect image {tag}: {e.explanation or e}") from e
    finally:
        if own:
            client.close()


def build_image(tag: str = DEFAULT_TAG, *, base: str | None = None, force: bool = False,
                mirror: str = DEFAULT_MIRROR) -> str:
    """Build the sandbox image ``tag`` and return its id; an existing image is kept unless ``force``.

    ``base`` None builds offline with debootstrap; otherwise ``base`` is pulled and extended with a Dockerfile.
    """
    client = docker_client(timeout=BUILD_API_TIMEOUT)
    try:
        old_id = client.images.get(tag).id if image_exists(tag, client) else None
        if old_id and not force:
            logger.info("image %s already exists (%s); pass --force to rebuild it", tag, old_id[:19])
            return old_id
        started = time.monotonic()
        if base is None:
            image_id = _build_debootstrap(client, tag, mirror)
        else:
            image_id = _build_dockerfile(client, tag, base)
        size_mb = client.images.get(image_id).attrs.get("Size", 0) / 1e6
        logger.info("built %s (%s, %.0f MB) in %.0f s", tag, image_id[:19], size_mb, time.monotonic() - started)
        if old_id and old_id != image_id:
            # The rebuilt tag leaves the old image dangling (~125 MB a time); drop it unless a container uses it.
            try:
                client.images.remove(old_id)
            except docker.errors.APIError as e:
                logger.info("kept the previous image %s: %s", old_id[:19], e.explanation or e)
        return image_id
    finally:
        client.close()


def _run_step(argv: list[str], what: str) -> None:
    """Run a build command, logging its output at DEBUG; on failure raise with the last lines it printed."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    for line in proc.stdout.splitlines():
        logger.debug("%s: %s", argv[0], line)
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        raise SandboxError(f"{what} failed with exit code {proc.returncode}: {tail}")


def _build_debootstrap(client: docker.DockerClient, tag: str, mirror: str) -> str:
    if os.geteuid() != 0:
        raise SandboxError("the offline image build runs debootstrap, which needs root; run "
                           "`sudo python -m rcp.sandbox build-image`, or pass --base python:3.12-slim if a registry "
                           "is reachable")
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed; `sudo apt-get install debootstrap`, or pass "
                           "--base python:3.12-slim if a registry is reachable")
    # /var/tmp rather than /tmp: the rootfs is ~260 MB and /tmp is often a small tmpfs.
    workdir = Path(tempfile.mkdtemp(prefix="rcp-sandbox-image-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    tar_path = workdir / "rootfs.tar"
    try:
        t = time.monotonic()
        logger.info("step 1/4: debootstrap %s (%s) from %s into %s; takes about a minute",
                    SUITE, ",".join(PACKAGES), mirror, rootfs)
        _run_step(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs),
                   mirror], "debootstrap")
        logger.info("step 1/4 done in %.0f s", time.monotonic() - t)

        t = time.monotonic()
        logger.info("step 2/4: adding user sandbox (uid %d) and trimming caches", SANDBOX_UID)
        _prepare_rootfs(rootfs)
        logger.info("step 2/4 done in %.1f s", time.monotonic() - t)

        t = time.monotonic()
        logger.info("step 3/4: packing the root filesystem")
        # --numeric-owner: the image must keep the rootfs's uids, not whatever names the host maps them to.
        _run_step(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar_path), "."], "tar")
        logger.info("step 3/4 done in %.1f s (%.0f MB)", time.monotonic() - t, tar_path.stat().st_size / 1e6)

        t = time.monotonic()
        logger.info("step 4/4: docker import as %s", tag)
        repository, version = docker.utils.parse_repository_tag(tag)
        try:
            result = client.api.import_image(src=str(tar_path), repository=repository, tag=version or "latest",
                                             changes=IMAGE_CHANGES)
        except docker.errors.APIError as e:
            raise SandboxError(f"docker import of {tag} failed: {e.explanation or e}") from e
        logger.debug("docker import answered %r", result)
        logger.info("step 4/4 done in %.0f s", time.monotonic() - t)
        return client.images.get(tag).id
    finally:
        # debootstrap leaves mounted /proc on failure in some versions; rmtree would then fail or, worse,
        # descend into the host's /proc, so unmount anything still mounted below the build dir first.
        _unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _prepare_rootfs(rootfs: Path) -> None:
    """Add the sandbox user and the mount points, and drop what only apt needs (~30 MB)."""
    uid = SANDBOX_UID
    with open(rootfs / "etc/passwd", "a") as f:
        f.write(f"sandbox:x:{uid}:{uid}:rcp sandbox:/work:/usr/sbin/nologin\n")
    with open(rootfs / "etc/group", "a") as f:
        f.write(f"sandbox:x:{uid}:\n")
    shadow = rootfs / "etc/shadow"
    if shadow.exists():
        with open(shadow, "a") as f:
            f.write("sandbox:!:19000:0:99999:7:::\n")
    # Mount points must exist in the image: the sandbox's root filesystem is read-only at run time.
    work = rootfs / "work"
    work.mkdir(exist_ok=True)
    os.chown(work, uid, uid)
    work.chmod(0o700)
    (rootfs / "tmp").chmod(0o1777)
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
                "usr/share/locale"):
        target = rootfs / sub
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                elif child.name != "lock":
                    child.unlink(missing_ok=True)
    for cache in rootfs.glob("var/cache/apt/*.bin"):
        cache.unlink()


def _unmount_below(path: Path) -> None:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(path) + "/"
    targets = [line.split()[1] for line in mounts if len(line.split()) > 1 and line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def _build_dockerfile(client: docker.DockerClient, tag: str, base: str) -> str:
    logger.info("step 1/1: docker build %s FROM %s + pip install pytest (needs a registry and PyPI)", tag, base)
    dockerfile = io.BytesIO(DOCKERFILE.format(base=base).encode())
    try:
        image, build_log = client.images.build(fileobj=dockerfile, tag=tag, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as e:
        tail = " | ".join(str(item.get("stream", item.get("error", ""))).strip() for item in list(e.build_log)[-3:])
        raise SandboxError(f"docker build of {tag} from {base} failed: {e.msg}; last output: {tail}") from e
    except docker.errors.APIError as e:
        raise SandboxError(f"docker build of {tag} from {base} failed: {e.explanation or e}") from e
    for item in build_log:
        if "stream" in item and item["stream"].strip():
            logger.debug("build: %s", item["stream"].rstrip())
    return image.id
