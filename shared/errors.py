"""The small error hierarchy every handler speaks.

- RetryableError: a transient failure. The consumer runtime raises, so Pub/Sub redelivers with
  backoff and finally dead-letters.
- PermanentError: retrying cannot help. The runtime logs, audits and acknowledges.
- InvalidInput: the input itself is wrong (bad message, bad config). Treated as permanent.
- ConfigError: a missing or malformed setting; raised at start with the setting's name.
"""

from __future__ import annotations


class AgentOpsError(Exception):
    """Base class for every error this project raises on purpose."""


class RetryableError(AgentOpsError):
    """A transient failure: try again later."""


class PermanentError(AgentOpsError):
    """A failure that retrying will not fix."""


class InvalidInput(PermanentError):
    """The input is malformed or violates its schema."""


class ConfigError(AgentOpsError):
    """A setting is missing or malformed. The message names the setting."""


class SecretUnavailable(RetryableError):
    """A secret could not be read (Secret Manager unreachable, denied, or empty)."""
