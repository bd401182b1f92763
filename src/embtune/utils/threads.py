"""Thread settings that are fast when embtune has the CPU to itself and degrade gracefully when it does not.

torch's CPU kernels run on OpenMP threads that wait for each other at the end of every operation. Two things
decide how that wait behaves:

- **The spin before sleeping.** Spinning makes the next operation start at once: on 2 cores a training step
  of the bundled model took 289 ms with ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once) and 207-213 ms with
  spinning (``bench/profile_step.py``), and an encode of 16 texts per call ran 565 vs 828 texts/s. But when
  another busy process holds one of the cores, a spinning thread burns the time slice its partner needs, and
  both processes become 10-50x slower (``bench/threads.py``). The ``embtune`` command sets
  ``GOMP_SPINCOUNT=10000`` (GNU OpenMP, the one torch's wheels use): a short spin that keeps the solo speed.
  Both variables are read once, when the OpenMP runtime loads with torch, so the CLI sets it before anything
  imports torch; a user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins (``OMP_WAIT_POLICY=PASSIVE``
  restores the old sleep-at-once behaviour).
- **The number of threads.** A barrier only costs anything when there is more than one thread, so under
  contention the cure is fewer threads, not slower waiting. ``adapt_threads()`` (called between batches of
  ``encode`` and between training steps) measures, every half second, how much of this process's CPUs other
  processes used (``/proc/stat`` minus this process's own CPU time) and sets torch's thread count to the
  CPUs left over (at least 1, at most the count it started with or the user set last). Two embtune processes
  on 2 cores thus settle at one thread each. The count stays where it was last set between embtune calls.
  ``EMBTUNE_ADAPTIVE_THREADS=0`` turns it off (a training run's last bits can depend on the thread count:
  gradient sums are split differently; ``encode`` gives the same bits at any count).
"""

from __future__ import annotations

import os
import sys
import threading
import time

THREAD_ENV = {"GOMP_SPINCOUNT": "10000"}
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure_thread_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the short OpenMP spin unless the user chose a wait policy or spin count; return what is in effect.

    Has an effect only before torch is first imported in this process (a warning-free no-op after).
    """
    env = os.environ if environ is None else environ
    if not any(key in env for key in _WAIT_VARIABLES):
        env.update(THREAD_ENV)
    return {key: env[key] for key in _WAIT_VARIABLES if key in env}


def torch_already_loaded() -> bool:
    """True when torch is imported, i.e. when changing the OpenMP variables no longer has an effect."""
    return "torch" in sys.modules


class ThreadGovernor:
    """Sets torch's thread count to the CPUs that other processes leave free (see the module docstring).

    ``stat_path`` and ``clock``/``cpu_clock`` are injectable for tests; ``interval`` is the measuring window.
    """

    def __init__(self, interval: float = 0.5, stat_path: str = "/proc/stat", clock=time.monotonic,
                 cpu_clock=time.process_time) -> None:
        self.interval = interval
        self.stat_path = stat_path
        self.clock, self.cpu_clock = clock, cpu_clock
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self.ceiling: int | None = None  # most threads to use: the count at the first call or the user's last
        self.current: int | None = None  # what this governor set last
        self._last: tuple[float, float, float] | None = None
        self._lock = threading.Lock()

    def _busy_seconds(self) -> float | None:
        """CPU seconds spent running anything (user, nice, system, irq, softirq) on this process's CPUs."""
        wanted = {f"cpu{i}" for i in self.cpus}
        busy = 0
        try:
            with open(self.stat_path, encoding="ascii") as fh:
                for line in fh:
                    if not line.startswith("cpu"):
                        break
                    name, *fields = line.split()
                    if name in wanted:
                        user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
                        busy += user + nice + system + irq + softirq
        except (OSError, ValueError):
            return None
        return busy * self.tick_s

    def others(self) -> float | None:
        """CPUs' worth of work other processes did since the last call (None on the first call or off Linux)."""
        busy = self._busy_seconds()
        if busy is None:
            return None
        sample = (self.clock(), self.cpu_clock(), busy)
        last, self._last = self._last, sample
        if last is None or sample[0] <= last[0]:
            return None
        return max(0.0, ((sample[2] - last[2]) - (sample[1] - last[1])) / (sample[0] - last[0]))

    def tick(self) -> int | None:
        """Re-measure if ``interval`` has passed; set and return the new thread count when it changes."""
        if self._last is not None and self.clock() - self._last[0] < self.interval:
            return None
        if not self.cpus or not self._lock.acquire(blocking=False):
            return None
        try:
            import torch

            now = torch.get_num_threads()
            if self.current is None or now != self.current:  # first call, or the user set a count since
                self.ceiling = self.current = now
            others = self.others()
            if others is None or self.ceiling <= 1:
                return None
            wanted = max(1, min(self.ceiling, int(len(self.cpus) - others + 0.4)))
            if wanted == self.current:
                return None
            torch.set_num_threads(wanted)
            self.current = wanted
            return wanted
        finally:
            self._lock.release()


_GOVERNOR: ThreadGovernor | None = None


def adapt_threads() -> int | None:
    """The process-wide ``ThreadGovernor.tick()`` (a no-op with ``EMBTUNE_ADAPTIVE_THREADS=0``)."""
    global _GOVERNOR
    if _GOVERNOR is None:
        if os.environ.get("EMBTUNE_ADAPTIVE_THREADS", "1") == "0":
            return None
        _GOVERNOR = ThreadGovernor()
    return _GOVERNOR.tick()
