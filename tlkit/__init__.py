"""tlkit: the transfer-learning workbook's toolkit.

Modules follow the flow of data. The core: ``system`` (errors, atomic writes, the cache,
hardware, devices) below all, then ``data`` → ``models`` → ``train`` → ``features`` /
``finetune`` / ``label_efficiency`` → ``evaluate``. On top, knowing the core but never known
by it (``tests/test_layering.py``): ``records`` / ``findings`` / ``plots``, then ``course``,
``book``, ``bench``, ``predict`` (a model file → class names), ``export``, ``service`` (the
HTTP app) and ``cli``. Importing tlkit changes nothing global:
call :func:`tlkit.quiet` first to silence TensorFlow's log lines (oneDNN stays on).
"""
from __future__ import annotations

from tlkit.system import TlkitError, quiet

__version__ = "0.1.0"
__all__ = ["TlkitError", "quiet", "__version__"]
