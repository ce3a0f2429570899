"""Shared fixtures. Each section names the tests it serves; add new sections below, don't mix them."""

from __future__ import annotations

import os
import socket

import pytest

# --- Docker sandbox (tests/test_sandbox.py; any test marked `docker`) ------------------------------------------


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    """Tag of the sandbox image, built once if missing. Skips only when Docker itself is unreachable."""
    from rcp.errors import DockerUnavailableError
    from rcp.sandbox_image import build_image, docker_client, image_exists
    from rcp.settings import load_settings

    tag = load_settings().sandbox_image
    try:
        client = docker_client()
    except DockerUnavailableError as e:
        pytest.skip(str(e))
    try:
        if not image_exists(tag, client):
            build_image(tag)  # ~40-120 s, offline (debootstrap); a failure here is a real error, not a skip
    finally:
        client.close()
    return tag


@pytest.fixture(scope="session", autouse=True)
def no_sandbox_container_left():
    """Fails the session if a test left a sandbox container behind: every path must remove its container.

    Counted: containers of this test process, and of dead processes on this host (e.g. a killed CLI run).
    Containers of other live rcp processes sharing the engine are theirs and are left alone.
    """
    yield
    try:
        import docker

        from rcp.sandbox import LABEL, LABEL_HOST, LABEL_PID, _owner_alive, _remove_container
    except ImportError:
        return
    try:
        client = docker.from_env(timeout=10)
        infos = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    except docker.errors.DockerException:
        return  # no Docker, so nothing can have leaked into it
    leaked = []
    for info in infos:
        labels = info.get("Labels") or {}
        ours = labels.get(LABEL_HOST) == socket.gethostname() and labels.get(LABEL_PID) == str(os.getpid())
        if ours or not _owner_alive(labels):
            leaked.append(f"{info['Names'][0].lstrip('/')} ({info['Status']})")
            _remove_container(client, info["Id"])  # report it, but don't leave it running for the next session
    client.close()
    assert not leaked, f"sandbox containers left after the test session: {', '.join(leaked)}"
