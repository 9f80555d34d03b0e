"""tlkit: the transfer-learning workbook's toolkit.

Modules follow the flow of data: ``data`` → ``models`` → ``train`` → ``evaluate``
→ ``plots`` / ``records``, with ``features`` (frozen-feature cache), ``course``
(papermill runner), ``book``, ``bench`` and ``cli`` on top.
"""
from __future__ import annotations

import os

# Quiet TensorFlow before anything imports it (notebooks import tlkit first).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # else TF logs a oneDNN notice even at level 3
# oneDNN kernels are faster on recent CPUs (``tlkit bench`` measures both); set
# TF_ENABLE_ONEDNN_OPTS=1 before importing tlkit to use them, at the cost of that notice.

__version__ = "0.1.0"


class TlkitError(Exception):
    """A user-facing error: the message says what went wrong and how to fix it."""
