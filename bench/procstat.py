"""CPU and memory of the processes under test, read from /proc (no dependency needed).

CPU is user + system time of the process (all its threads) and of its live
descendants (a supervisor's workers) between the start and the end of a
measured window, so "1.0 core" means one core fully busy.
RSS is sampled every `interval_s` in a daemon thread; the peak of those
samples is reported next to the kernel's own high-water mark (`VmHWM`). A
process that exits during the window keeps its last reading.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are fixed.
    return stat.rsplit(")", 1)[1].split()


Children = dict[int, list[int]]


def children_map() -> Children:
    """Parent pid -> child pids of every live process (one scan of /proc)."""
    children: Children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int, children: Children | None = None) -> list[int]:
    """Every live process below pid (the workers of a supervisor such as the gateway's)."""
    children = children_map() if children is None else children
    out: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            out.append(child)
            queue.append(child)
    return out


def cpu_seconds(pid: int, children: Children | None = None) -> float | None:
    """user + system CPU seconds of pid and its live descendants so far; None when pid is gone."""
    total = 0.0
    for index, member in enumerate((pid, *descendants(pid, children))):
        fields = _stat_fields(member)
        if fields is None:
            if index == 0:
                return None
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def memory_mb(pid: int, children: Children | None = None) -> tuple[float, float] | None:
    """(RSS, peak RSS) in MB of pid and its descendants (summed); None when pid is gone."""
    rss = peak = 0.0
    for index, member in enumerate((pid, *descendants(pid, children))):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            if index == 0:
                return None
            continue
        for line in status.splitlines():
            key, _, rest = line.partition(":")
            if key == "VmRSS":
                rss += int(rest.split()[0]) / 1024
            elif key == "VmHWM":
                peak += int(rest.split()[0]) / 1024
    return rss, peak


@dataclass
class _Track:
    pid: int
    cpu_start: float | None = None
    cpu_last: float | None = None
    rss_mb: float = 0.0
    peak_mb: float = 0.0
    samples: list[float] = field(default_factory=list)


class ProcessSampler:
    """Samples named processes while a benchmark runs; `report()` gives the window's figures."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._stopped: float | None = None

    def watch(self, name: str, pid: int) -> None:
        """Add a process (may be called while sampling; its window starts now)."""
        track = _Track(pid=pid, cpu_start=cpu_seconds(pid))
        track.cpu_last = track.cpu_start
        with self._lock:
            self._tracks[name] = track

    def start(self) -> ProcessSampler:
        """Open the window and sample in the background."""
        self._started = time.monotonic()
        children = children_map()
        with self._lock:
            for track in self._tracks.values():
                track.cpu_start = track.cpu_last = cpu_seconds(track.pid, children)
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the window (takes a last sample)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()
        self._stopped = time.monotonic()

    def report(self) -> dict[str, dict[str, float | int | None]]:
        """Per process: CPU seconds, average cores, RSS now and peak, in the window."""
        wall = (self._stopped or time.monotonic()) - self._started
        out: dict[str, dict[str, float | int | None]] = {}
        with self._lock:
            for name, t in self._tracks.items():
                used = (
                    None if t.cpu_start is None or t.cpu_last is None
                    else t.cpu_last - t.cpu_start
                )
                out[name] = {
                    "pid": t.pid,
                    "cpu_s": None if used is None else round(used, 2),
                    "cpu_cores": None if used is None or wall <= 0 else round(used / wall, 2),
                    "rss_mb": round(t.rss_mb, 1),
                    "peak_rss_mb": round(max(t.peak_mb, max(t.samples, default=0.0)), 1),
                }
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        children = children_map()  # one scan of /proc per sample, not two per process
        with self._lock:
            for track in self._tracks.values():
                cpu = cpu_seconds(track.pid, children)
                if cpu is not None:
                    track.cpu_last = cpu
                memory = memory_mb(track.pid, children)
                if memory is not None:
                    track.rss_mb, track.peak_mb = memory
                    track.samples.append(memory[0])
