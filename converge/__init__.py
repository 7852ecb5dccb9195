"""converge: a library for networks of autonomous (LLM) agents.

The package root only carries ``__version__``; public names live in the
submodules the documentation names (``converge.core.message.Message``,
``converge.runtime.AgentRuntime``, ...). Importing ``converge`` pulls in no
optional extra (no IPython, ipywidgets, pandas, vendor SDKs).
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("converge")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
