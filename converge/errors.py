"""The exception tree of converge.

One root, :class:`ConvergeError`, and a shallow tree under it. Where the
reference library promised a builtin exception type (``ValueError`` for bad
input, ``ImportError`` for a missing extra), our error also subclasses that
builtin so code written against the reference keeps catching it.
"""

from __future__ import annotations


class ConvergeError(Exception):
    """Root of every error raised by converge."""


class ConfigError(ConvergeError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class DecodeError(ConvergeError, ValueError):
    """Bytes from a file, a store or the network could not be decoded."""


class CodecError(DecodeError):
    """A stored value could not be encoded or decoded by the store codec.

    Attributes:
        key: the store key involved, when known.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        if key is not None:
            message = f"{message} (key {key!r})"
        super().__init__(message)


class SignatureError(ConvergeError):
    """A message signature is missing, malformed or does not verify."""


class CryptoError(ConvergeError, ValueError):
    """Bad key material or a ciphertext that does not authenticate."""


class TransportError(ConvergeError):
    """A transport could not deliver or receive a message."""


class UndeliverableError(TransportError):
    """A message had no reachable destination (unknown recipient, no route)."""


class FrameError(TransportError, ValueError):
    """A wire frame was malformed, truncated or larger than the limit."""


class PolicyDenied(ConvergeError):
    """A policy (admission, safety, rate limit) refused an action."""


class InvalidTransition(ConvergeError, ValueError):
    """A task state transition that the state machine does not allow."""


class ProviderError(ConvergeError):
    """An LLM provider call failed or returned something unusable."""


class MissingExtraError(ConvergeError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


__all__ = [
    "CodecError",
    "ConfigError",
    "ConvergeError",
    "CryptoError",
    "DecodeError",
    "FrameError",
    "InvalidTransition",
    "MissingExtraError",
    "PolicyDenied",
    "ProviderError",
    "SignatureError",
    "TransportError",
    "UndeliverableError",
]
