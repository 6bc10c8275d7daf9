"""What the benchmark scripts share: the machine's description and the /proc accounting of a process tree.

Imported by the scripts beside it (``sys.path`` gets this folder first); not part of the clusterclip package.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def session_usage(sid: int) -> tuple[dict[int, float], float]:
    """(CPU seconds by pid, summed anonymous RSS in MiB) of the processes of session ``sid``, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    anon = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) != sid:  # after the name: state ppid pgrp session ... utime(11) stime(12)
                continue
            cpu[int(d)] = (int(fields[11]) + int(fields[12])) / tick
            with open(f"/proc/{d}/status", "rb") as f:
                anon += next((int(line.split()[1]) for line in f if line.startswith(b"RssAnon:")), 0) / 1024
        except (OSError, ValueError, IndexError):
            continue
    return cpu, anon


def add_session_cpu(sid: int, seen: dict[int, float]) -> float:
    """Fold the CPU seconds of session ``sid``'s processes into ``seen`` (a pid's largest reading: processes
    that end between samples keep their last one); the summed anonymous RSS now, in MiB."""
    cpu, anon = session_usage(sid)
    for pid, seconds in cpu.items():
        seen[pid] = max(seen.get(pid, 0.0), seconds)
    return anon
