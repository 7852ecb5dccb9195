"""Lazy imports of optional dependencies, with errors that name the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from converge.errors import MissingExtraError


def require(module: str, extra: str, *, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: the importable module name, e.g. ``"websockets"``.
        extra: the converge extra that installs it, e.g. ``"websocket"``.
        purpose: a short phrase for the message, e.g. ``"the WebSocket transport"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"the optional package {module!r} is needed{what} but is not installed; "
            f'install it with: pip install "converge[{extra}]"'
        ) from exc
