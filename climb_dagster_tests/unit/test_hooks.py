"""The step-memory figure is the step process's own peak, not its parent's resident size at fork."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from climb_dagster.hooks import peak_rss_mib

CHILD = (
    "import resource; from climb_dagster.hooks import peak_rss_mib; "
    "print(peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's; elsewhere ru_maxrss is used")
def test_a_spawned_step_reports_its_own_peak_not_the_parents():
    held = np.ones(600 * 2**20 // 8)  # 600 MiB resident in this (the parent) process
    parent = peak_rss_mib()
    own, inherited = map(float, subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                                               check=True).stdout.split())
    assert held.sum() > 0 and parent > 600
    assert inherited >= parent - 50, "ru_maxrss carries the parent's size across fork+exec (why it is not used)"
    assert own < parent - 300, (own, parent)
