"""Run generated code in a throwaway, locked-down Docker container and report what happened.

INTERFACE (written first so the solver can code against it; DockerSandbox is filled in below).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)


class SandboxLimits(BaseModel):
    """Limits of one run; ``from_settings`` takes them from config."""

    timeout_s: float = Field(default=60.0, gt=0)
    memory_mb: int = Field(default=256, ge=32)
    cpus: float = Field(default=1.0, gt=0)
    pids: int = Field(default=64, ge=8)
    tmpfs_mb: int = Field(default=64, ge=1)
    file_size_mb: int = Field(default=16, ge=1)
    output_bytes: int = Field(default=64 * 1024, ge=1024)

    @classmethod
    def from_settings(cls, s) -> SandboxLimits:
        return cls(timeout_s=s.sandbox_timeout, memory_mb=s.sandbox_memory_mb, cpus=s.sandbox_cpus,
                   pids=s.sandbox_pids, tmpfs_mb=s.sandbox_tmpfs_mb, file_size_mb=s.sandbox_file_size_mb,
                   output_bytes=s.sandbox_output_kb * 1024)


class SandboxReport(BaseModel):
    """What one sandbox run did. ``tests_*`` are None when no pytest run was recognised."""

    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0  # bytes the process wrote, including what was dropped past the cap
    stderr_bytes: int = 0
    output_truncated: bool = False
    duration_s: float = 0.0
    timed_out: bool = False
    oom_killed: bool = False
    tests_passed: int | None = None
    tests_failed: int | None = None
    files: dict[str, str] = Field(default_factory=dict)  # collected result files (regular files only)
    image: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


class Sandbox(ABC):
    """Runs files + a command in isolation. Language-agnostic: the command and image decide the language."""

    @abstractmethod
    async def run(self, files: Mapping[str, str], cmd: Sequence[str] | None = None, *,
                  timeout: float | None = None, collect: Sequence[str] = ()) -> SandboxReport:
        """Copy ``files`` (relative path -> text) into a fresh work dir, run ``cmd`` there, return the report.

        ``cmd`` None with exactly one ``.py`` file runs it with python3. ``collect`` names work-dir files to
        bring back in ``report.files`` (regular files only; symlinks are never followed).
        """

    async def close(self) -> None:
        """Remove anything still running. Never raises."""
