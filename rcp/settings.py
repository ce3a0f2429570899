"""One validated settings model for every rcp process.

Where values come from, later ones winning:

1. ``config.py`` at the project root (or the file named by ``RCP_CONFIG``): the user-editable defaults,
   one commented UPPER_CASE constant per setting. It is the only place defaults are written down.
2. Environment variables ``RCP_<NAME>`` (lists as JSON or comma-separated).
3. Command-line flags ``--<name-with-dashes>``, derived from the fields below so ``--help`` cannot drift.

Each field declares its type, bounds and a one-line description once. A bad value or an unknown name
raises ``ConfigError`` whose message is a single line naming the setting, where the value came from and
what is allowed. Deliberately left out: reading any other file format, and hot reloading.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import types
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rcp.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "RCP_"
# Environment variables with the prefix that are not settings themselves.
META_ENV = {"RCP_CONFIG"}


class Settings(BaseModel):
    """Every tunable of rcp. Field names are the lower-case forms of the names in config.py."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # --- swarm ---
    num_nodes: int = Field(ge=1, le=64, description="node processes `python network.py` starts")
    host_maddrs: list[str] = Field(description="multiaddrs a node listens on")
    announce_maddrs: list[str] = Field(description="multiaddrs a node tells peers to dial (empty: the listened ones)")
    initial_peers: list[str] = Field(description="multiaddrs of a running swarm to join (empty: start a new one)")
    run_dir: str = Field(min_length=1, description="directory for the swarm contact file and node logs")
    swarm_key: str = Field(pattern=r"^$|^[!-~]{32,256}$", repr=False,
                           description="shared secret of the swarm (empty: network.py makes one per swarm); "
                                       "prefer RCP_SWARM_KEY to a flag, which other users can see in ps",
                           json_schema_extra={"allowed": "empty, or 32 to 256 printable ASCII characters without "
                                                         "spaces, e.g. from: python -c 'import secrets; "
                                                         "print(secrets.token_hex(32))'"})
    max_root_tasks: int = Field(ge=1, le=1000, description="root tasks one node runs at once; more get a 'busy' reply")
    # --- model ---
    llm_backend: Literal["llama", "scripted"] = Field(description="'llama' runs the GGUF; 'scripted' is the test fake")
    llm_script: str = Field(description="JSON script for the scripted backend (tests only)")
    model_path: str = Field(min_length=1, description="GGUF file each node loads")
    n_threads: int = Field(ge=1, le=256, description="CPU threads per node for generation")
    generation_slots: int = Field(ge=0, le=256, description="generations at once on this host (0: cores / N_THREADS)")
    n_threads_max: int = Field(ge=0, le=256, description="threads of a generation that finds other slots free and "
                                                         "takes them (0: every core; N_THREADS: never widen)")
    n_ctx: int = Field(ge=512, le=131072, description="context window in tokens")
    max_tokens: int = Field(ge=16, le=32768, description="most tokens one generation may produce")
    temperature: float = Field(ge=0.0, le=2.0, description="sampling temperature (0 is greedy)")
    # --- solver ---
    max_retries: int = Field(ge=0, le=20, description="extra attempts after a failed test run")
    drafts: int = Field(ge=1, le=8, description="first drafts of a leaf's code, chosen by agreement (1: no voting)")
    task_timeout: float = Field(ge=10.0, le=86400.0, description="seconds one (sub)task may take on a peer")
    submit_timeout: float = Field(ge=10.0, le=604800.0, description="seconds a submitted root task may take")
    max_depth: int = Field(ge=0, le=8, description="deepest level of decomposition (0: never decompose)")
    max_subtasks: int = Field(ge=2, le=16, description="most parts one decomposition may have")
    max_llm_calls: int = Field(ge=1, le=10000, description="LLM calls one root task may spend")
    # --- sandbox ---
    sandbox_image: str = Field(min_length=1, description="Docker image generated code runs in")
    sandbox_timeout: float = Field(ge=1.0, le=3600.0, description="wall-clock seconds one sandbox run may take")
    sandbox_memory_mb: int = Field(ge=32, le=65536, description="memory limit of a sandbox container (no swap)")
    sandbox_cpus: float = Field(ge=0.1, le=64.0, description="CPU limit of a sandbox container")
    sandbox_pids: int = Field(ge=8, le=4096, description="process limit of a sandbox container")
    sandbox_tmpfs_mb: int = Field(ge=1, le=4096, description="size of the writable work dir in a sandbox")
    sandbox_file_size_mb: int = Field(ge=1, le=4096, description="largest file a sandbox process may write")
    sandbox_output_kb: int = Field(ge=1, le=65536, description="stdout/stderr kept per stream and run")
    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(description="log level of the entry points")

    def resolve(self, path: str) -> Path:
        """A path setting made absolute: relative paths are relative to the project root (where config.py is)."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def model_file(self) -> Path:
        return self.resolve(self.model_path)

    @property
    def run_path(self) -> Path:
        return self.resolve(self.run_dir)


FIELDS = Settings.model_fields
SECRET = {"swarm_key"}  # never echoed in error messages


def allowed(name: str) -> str:
    """Human description of what a field accepts, e.g. 'an integer from 1 to 64'."""
    field = FIELDS[name]
    if isinstance(field.json_schema_extra, dict) and "allowed" in field.json_schema_extra:
        return str(field.json_schema_extra["allowed"])
    ann = field.annotation
    lo = hi = None
    min_len = None
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.MinLen):
            min_len = meta.min_length
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(ann))
    if ann is int or ann is float:
        kind = "an integer" if ann is int else "a number"
        if lo is not None and hi is not None:
            return f"{kind} from {lo} to {hi}"
        return kind
    if get_origin(ann) is list:
        return "a list of strings (JSON or comma-separated)"
    if ann is str:
        return "a non-empty string" if min_len else "a string"
    return str(ann)


def _parse_env(name: str, raw: str) -> Any:
    """Environment values are strings; lists may be JSON or comma-separated. Scalars are left to pydantic."""
    if get_origin(FIELDS[name].annotation) is list:
        raw = raw.strip()
        if raw.startswith("["):
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw  # pydantic will reject it with the usual message
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def config_file() -> Path:
    return Path(os.environ.get("RCP_CONFIG") or PROJECT_ROOT / "config.py")


def _read_config_py(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; restore config.py from git or set RCP_CONFIG to one")
    # A loader given explicitly reads any file name; spec_from_file_location alone returns None without ".py".
    loader = importlib.machinery.SourceFileLoader("_rcp_user_config", str(path))
    spec = importlib.util.spec_from_loader("_rcp_user_config", loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as e:  # a syntax error in the user's file is a config error, not a crash
        raise ConfigError(f"{path} cannot be loaded: {type(e).__name__}: {e}") from e
    values = {}
    for key, value in vars(module).items():
        if not key.isupper() or key.startswith("_") or isinstance(value, types.ModuleType):
            continue
        values[key] = value
    return values


def load_settings(cli: argparse.Namespace | dict[str, Any] | None = None, *, environ=None) -> Settings:
    """Build the validated settings from config.py, ``RCP_*`` environment variables and parsed CLI flags."""
    environ = os.environ if environ is None else environ
    path = config_file()
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key, value in _read_config_py(path).items():
        name = key.lower()
        if name not in FIELDS:
            known = ", ".join(n.upper() for n in FIELDS)
            raise ConfigError(f"unknown setting {key} in {path}; known settings: {known}")
        values[name], source[name] = value, str(path.name)
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key in META_ENV:
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in FIELDS:
            raise ConfigError(f"unknown setting in environment variable {key}; "
                              f"known: {', '.join(ENV_PREFIX + n.upper() for n in FIELDS)}")
        values[name], source[name] = _parse_env(name, raw), key
    cli_values = vars(cli) if isinstance(cli, argparse.Namespace) else dict(cli or {})
    for name, value in cli_values.items():
        if name in FIELDS and value is not None:
            values[name], source[name] = value, "--" + name.replace("_", "-")
    missing = [n.upper() for n in FIELDS if n not in values]
    if missing:
        raise ConfigError(f"{path} does not set {', '.join(missing)}; add them (see config.py in git for defaults)")
    try:
        return Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        if name in FIELDS:
            shown = repr(values.get(name))
            if name in SECRET:
                shown = f"<{len(str(values.get(name)))} characters, not shown>"
            raise ConfigError(f"bad setting {name.upper()} = {shown} (from {source.get(name, '?')}): "
                              f"must be {allowed(name)}") from None
        raise ConfigError(f"bad settings: {err['msg']}") from None


def add_settings_arguments(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    """Add ``--<setting>`` flags (default None = keep config.py's value) for the given settings (default all)."""
    group = parser.add_argument_group("settings (override config.py and RCP_* variables)")
    for name in names or list(FIELDS):
        field = FIELDS[name]
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description}; {allowed(name)}"
        if get_origin(field.annotation) is list:
            group.add_argument(flag, nargs="*", default=None, metavar="ADDR", help=help_text)
        else:
            # Strings on purpose: pydantic validates and converts, so a bad flag gets the same one-line message.
            group.add_argument(flag, default=None, metavar=name.upper(), help=help_text)
