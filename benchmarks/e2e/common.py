"""Paths, targets and the clock tick shared by the end-to-end benchmark's modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
ROOT = HERE.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_SHARE = 0.40  # admission rps / hello-world rps, from the issue
TARGET_P99_MS = 10.0
