"""tlkit: the transfer-learning workbook's toolkit.

Modules follow the flow of data: ``data`` → ``models`` → ``train`` → ``evaluate``
→ ``plots`` / ``records``, with ``features`` (frozen-feature cache), ``course``
(papermill runner), ``book``, ``bench``, ``serve`` and ``cli`` on top; ``system`` (atomic
writes, caches, hardware) sits below them all. Importing tlkit changes nothing global:
call :func:`tlkit.quiet` first to silence TensorFlow's log lines (oneDNN stays on).
"""
from __future__ import annotations

from tlkit.system import TlkitError, quiet

__version__ = "0.1.0"
__all__ = ["TlkitError", "quiet", "__version__"]
