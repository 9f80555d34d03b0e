"""tlkit: the transfer-learning workbook's toolkit.

Modules follow the flow of data: ``data`` → ``models`` → ``train`` → ``evaluate``
→ ``plots`` / ``records``, with ``features`` (frozen-feature cache), ``course``
(papermill runner), ``book``, ``bench`` and ``cli`` on top.
"""
from __future__ import annotations

import os

# Quiet TensorFlow before anything imports it (notebooks import tlkit first).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN stays on (measured ~35% faster training on CPU, still deterministic under a seed);
# set TF_ENABLE_ONEDNN_OPTS=0 yourself to compare against plain Eigen kernels.

__version__ = "0.1.0"


class TlkitError(Exception):
    """A user-facing error: the message says what went wrong and how to fix it."""
