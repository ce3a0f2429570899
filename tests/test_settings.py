"""Settings: config.py defaults load, overrides win in order, and every bad value is one clear line."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rcp.errors import ConfigError
from rcp.settings import FIELDS, PROJECT_ROOT, add_settings_arguments, load_settings


@pytest.fixture
def config(tmp_path, monkeypatch):
    """Write a config file = the real config.py plus extra lines, and point RCP_CONFIG at it."""

    def write(extra: str = "") -> Path:
        path = tmp_path / "config.py"
        path.write_text((PROJECT_ROOT / "config.py").read_text() + "\n" + extra)
        monkeypatch.setenv("RCP_CONFIG", str(path))
        return path

    return write


def test_defaults_load_from_config_py():
    s = load_settings(environ={})
    assert s.num_nodes == 6 and s.max_retries == 3
    assert s.task_timeout >= 300, "a 1.5B model on shared cores needs minutes per task"
    assert s.model_file.is_absolute() and s.model_file.name.endswith(".gguf")
    assert s.host_maddrs == ["/ip4/127.0.0.1/tcp/0"], "nodes listen on loopback only unless configured"


def test_config_py_sets_every_field_with_a_comment():
    text = (PROJECT_ROOT / "config.py").read_text()
    for name in FIELDS:
        line = next((ln for ln in text.splitlines() if ln.startswith(name.upper() + " =")), None)
        assert line is not None, f"config.py does not set {name.upper()}"
        assert "#" in line, f"config.py has no comment on {name.upper()}"


def test_env_overrides_config_and_cli_overrides_env():
    assert load_settings(environ={"RCP_NUM_NODES": "3"}).num_nodes == 3
    s = load_settings({"num_nodes": "4"}, environ={"RCP_NUM_NODES": "3"})
    assert s.num_nodes == 4


def test_env_lists_accept_json_and_commas():
    env = {"RCP_INITIAL_PEERS": "/ip4/127.0.0.1/tcp/1/p2p/A, /ip4/127.0.0.1/tcp/2/p2p/B"}
    assert load_settings(environ=env).initial_peers == ["/ip4/127.0.0.1/tcp/1/p2p/A", "/ip4/127.0.0.1/tcp/2/p2p/B"]
    env = {"RCP_HOST_MADDRS": '["/ip4/0.0.0.0/tcp/31337"]'}
    assert load_settings(environ=env).host_maddrs == ["/ip4/0.0.0.0/tcp/31337"]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"RCP_NUM_NODES": "-1"},
         "bad setting NUM_NODES = '-1' (from RCP_NUM_NODES): must be an integer from 1 to 64"),
        ({"RCP_NUM_NODES": "many"}, "NUM_NODES = 'many' (from RCP_NUM_NODES): must be an integer from 1 to 64"),
        ({"RCP_SANDBOX_CPUS": "0"}, "SANDBOX_CPUS = '0' (from RCP_SANDBOX_CPUS): must be a number from 0.1 to 64.0"),
        ({"RCP_LLM_BACKEND": "gpt"}, "LLM_BACKEND = 'gpt' (from RCP_LLM_BACKEND): must be one of 'llama', 'scripted'"),
        ({"RCP_NUM_NODEZ": "3"}, "unknown setting in environment variable RCP_NUM_NODEZ"),
    ],
)
def test_bad_env_values_name_the_setting_and_range(env, expected):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_values_in_config_py(config):
    config("MAX_RETRIES = -2\n")
    with pytest.raises(ConfigError, match=r"MAX_RETRIES = -2 \(from config.py\): must be an integer from 0 to 20"):
        load_settings(environ={})
    config("TASK_TIMEOUT = 'long'\n")
    with pytest.raises(ConfigError, match=r"TASK_TIMEOUT = 'long' .*a number from 10.0 to 86400.0"):
        load_settings(environ={})
    config("NUM_NODES = 3\nMAX_RETRYS = 2\n")
    with pytest.raises(ConfigError, match=r"unknown setting MAX_RETRYS in .*config.py"):
        load_settings(environ={})
    config("def broken(:\n")
    with pytest.raises(ConfigError, match=r"cannot be loaded: SyntaxError"):
        load_settings(environ={})


def test_cli_flags_are_derived_from_fields():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    args = parser.parse_args(["--num-nodes", "2", "--initial-peers", "/ip4/127.0.0.1/tcp/5/p2p/X"])
    s = load_settings(args, environ={})
    assert s.num_nodes == 2 and s.initial_peers == ["/ip4/127.0.0.1/tcp/5/p2p/X"]
    help_text = parser.format_help()
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in help_text


def test_bad_setting_at_startup_is_one_line_not_a_traceback():
    """An entry point given a bad value prints one line and exits non-zero."""
    env = {"PATH": "/usr/bin:/bin", "RCP_SANDBOX_MEMORY_MB": "-5", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "rcp.sandbox", "run", "x.py"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(r"SANDBOX_MEMORY_MB = '-5' .*from 32 to 65536", lines[0]), proc.stderr


def test_a_config_file_without_the_py_suffix_loads(tmp_path, monkeypatch):
    path = tmp_path / "rcp.conf"
    path.write_text((PROJECT_ROOT / "config.py").read_text() + "\nNUM_NODES = 3\n")
    monkeypatch.setenv("RCP_CONFIG", str(path))
    assert load_settings(environ={}).num_nodes == 3
    path.write_text("NUM_NODES = (\n")
    with pytest.raises(ConfigError, match=r"rcp.conf cannot be loaded: SyntaxError"):
        load_settings(environ={})
