"""Typed errors of the LLM extension, all under :class:`converge.errors.ProviderError`.

Vendor SDK exceptions are translated into one of these, so code can catch one tree
whatever the vendor. Messages name the provider, the model and the HTTP status, and
never contain an API key. The SDK exception itself is not chained (a vendor may echo
the key in it): ``__cause__`` is a ``RedactedSDKError`` stand-in holding only the
redacted text, ``sdk_error_type`` and ``status``.
"""

from __future__ import annotations

from converge.errors import ProviderError


class ProviderCallError(ProviderError):
    """A call to an LLM vendor failed.

    Attributes:
        provider: ``"openai"``, ``"anthropic"``, ``"mistral"``, ...
        model: the model of the request, when known.
        status: the HTTP status, when the vendor answered with one.
    """

    def __init__(self, message: str, *, provider: str, model: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status = status


class ProviderHTTPError(ProviderCallError):
    """The vendor answered with an HTTP error status (``status`` is set)."""


class ProviderAuthError(ProviderHTTPError):
    """HTTP 401/403: the API key is missing, wrong or not allowed to use the model."""


class ProviderRateLimitError(ProviderHTTPError):
    """HTTP 429: rate limited (after the SDK's own retries)."""


class ProviderServerError(ProviderHTTPError):
    """HTTP 5xx: the vendor failed (after the SDK's own retries)."""


class ProviderTimeoutError(ProviderCallError, TimeoutError):
    """The request timed out."""


class ProviderConnectionError(ProviderCallError, ConnectionError):
    """The vendor could not be reached."""


class DecisionParseError(ProviderError):
    """The model's answer is not a usable JSON array of decisions.

    Attributes:
        raw: the model's text.
        reason: what was wrong with it.
    """

    def __init__(self, message: str, *, raw: str, reason: str = "") -> None:
        super().__init__(message)
        self.raw = raw
        self.reason = reason


class CassetteMissError(ProviderError, LookupError):
    """A :class:`~converge.extensions.llm.ReplayProvider` has no recording of the request.

    Attributes:
        request_hash: the key of the request (see ``request_hash``).
        path: the cassette file.
    """

    def __init__(self, message: str, *, request_hash: str, path: str) -> None:
        super().__init__(message)
        self.request_hash = request_hash
        self.path = path


__all__ = [
    "CassetteMissError",
    "DecisionParseError",
    "ProviderAuthError",
    "ProviderCallError",
    "ProviderConnectionError",
    "ProviderHTTPError",
    "ProviderRateLimitError",
    "ProviderServerError",
    "ProviderTimeoutError",
]
