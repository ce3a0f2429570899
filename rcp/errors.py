"""The small error tree every rcp module raises from.

Two families, kept apart on purpose (see STYLE.md, "the model got it wrong" vs "we are broken"):

* ``ModelOutputError`` and ``TaskFailed``: the model answered in the wrong shape or its code failed.
  Callers record these and retry within a budget.
* ``InfrastructureError`` and its children: Docker down, model file missing, swarm unreachable.
  These propagate to the entry point, which prints ``str(error)`` as one line and exits non-zero;
  the message always says what to do next.

Deliberately left out: exit codes (entry points choose them) and logging (callers log).
"""

from __future__ import annotations


class RcpError(Exception):
    """Base of every error rcp raises on purpose. ``str(e)`` is one line fit for a user."""


class ConfigError(RcpError):
    """A setting has a bad value or an unknown name; the message names the setting and the allowed range."""


class InfrastructureError(RcpError):
    """Something outside the model's control is broken; retrying the same call will not help."""


class DockerUnavailableError(InfrastructureError):
    """The Docker engine does not answer (not installed, not started, or no permission)."""


class SandboxImageMissingError(InfrastructureError):
    """The configured sandbox image is not present in the local Docker engine."""


class SandboxError(InfrastructureError):
    """Docker answered but running a sandbox failed for a reason that is not the code's fault."""


class ModelMissingError(InfrastructureError):
    """The configured GGUF file does not exist; the message names the command that fetches it."""


class ModelFetchError(InfrastructureError):
    """No source could deliver a model file with the expected size and sha256."""


class SwarmUnavailableError(InfrastructureError):
    """No node of the swarm could be reached, or the swarm failed mid-task."""


class ModelOutputError(RcpError):
    """The model's reply could not be parsed or validated. Retryable: ask again, maybe with the error shown."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class BudgetExhausted(RcpError):
    """A task used up its LLM-call or wall-clock budget; the caller ends it with its best tested result."""
