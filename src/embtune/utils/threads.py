"""Thread settings that degrade gracefully when another busy process shares the CPU.

torch's CPU kernels run on OpenMP threads that, by default, spin at every barrier while they wait for the
other threads. When a second busy process holds one of the cores, the thread that is not scheduled makes the
others spin for a whole time slice at every operation: on 2 cores both processes become 10-50x slower.
``OMP_WAIT_POLICY=PASSIVE`` (GNU OpenMP) and ``KMP_BLOCKTIME=0`` (Intel OpenMP) make waiting threads sleep
instead. They are read once, when the OpenMP runtime loads with torch, so the CLI sets them before anything
imports torch; a value already in the environment wins (``OMP_WAIT_POLICY=ACTIVE`` restores spinning).
"""

from __future__ import annotations

import os
import sys

THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def configure_thread_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the OpenMP wait policy variables unless the user set them; return what is now in effect.

    Has an effect only before torch is first imported in this process (a warning-free no-op after).
    """
    env = os.environ if environ is None else environ
    for key, value in THREAD_ENV.items():
        env.setdefault(key, value)
    return {key: env[key] for key in THREAD_ENV}


def torch_already_loaded() -> bool:
    """True when torch is imported, i.e. when changing the OpenMP variables no longer has an effect."""
    return "torch" in sys.modules
