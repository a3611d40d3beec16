"""Machine description and CPU/RSS sampling from /proc, for benchmark results."""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

Json = dict[str, Any]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
VERSIONED = ("uvloop", "pyzmq", "lxml", "msgpack", "otszmq")


def machine_info() -> Json:
    """What a reader needs to compare two results: CPU, core count, kernel, library versions."""
    return {
        "cpu_model": _cpu_model(),
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": {name: _version(name) for name in VERSIONED},
    }


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU seconds used so far and resident memory of one process, at one moment."""

    at: float
    cpu_seconds: float
    rss_kb: int


def read_waits(pid: int) -> dict[int, int] | None:
    """Thread id -> nanoseconds that thread of ``pid`` has spent so far runnable but waiting
    for a core (``/proc/PID/task/TID/schedstat``, its second field); None if the kernel does not
    keep them or the process is gone.

    Why: on a machine whose cores are mostly busy a process that wakes may wait for one, and
    each hop of a pipeline pays that wait; it is latency the server's own queues do not show.
    NOTE: the kernel adds a wait when the thread gets the core, so one still waiting is missed.
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    waits: dict[int, int] = {}
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text(encoding="ascii").split()
        except OSError:
            continue  # that thread ended, or the kernel keeps no schedstat
        if len(fields) >= 2:
            waits[int(tid)] = int(fields[1])
    return waits or None


def wait_ms_per_s(
    first: dict[int, int] | None, last: dict[int, int] | None, wall: float
) -> float | None:
    """Milliseconds per second of a ``wall``-second window that a process's threads waited for
    a core, between two read_waits (1000: always one thread waiting). A thread that started in
    between counts all its wait; one that ended in between is missed."""
    if first is None or last is None or wall <= 0:
        return None
    waited_ns = sum(wait - first.get(tid, 0) for tid, wait in last.items())
    return round(waited_ns / 1e6 / wall, 1)


def read_proc(pid: int) -> ProcSample | None:
    """Samples `pid` from /proc; None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        statm = Path(f"/proc/{pid}/statm").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    # NOTE: the command name (field 2) may hold spaces; the numeric fields follow its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return ProcSample(
        at=time.monotonic(),
        cpu_seconds=(utime + stime) / CLOCK_TICKS,
        rss_kb=int(statm.split()[1]) * PAGE_KB,
    )


def system_cpu_seconds() -> tuple[float, float, float]:
    """(busy, total, steal) CPU seconds of the whole machine so far, summed over cores, from
    /proc/stat. Steal is time the hypervisor ran something else while this VM wanted the CPU;
    it counts as busy here."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]; guest is already in user.
    total = sum(values[:8])
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS, steal / CLOCK_TICKS


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def self_max_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass(slots=True)
class ProcWatch:
    """CPU% and RSS of one process over a window: `start`, any number of `sample`s, `stop`."""

    pid: int
    first: ProcSample | None = None
    last: ProcSample | None = None
    rss_max_kb: int = 0
    gone: bool = False
    first_waits: dict[int, int] | None = None  # read_waits at the first sample
    last_waits: dict[int, int] | None = None
    idle_class: bool = False  # in Linux's idle CPU class (SCHED_IDLE) at the first sample

    def sample(self) -> None:
        current = read_proc(self.pid)
        if current is None:
            self.gone = True
            return
        waits = read_waits(self.pid)
        if self.first is None:
            self.first, self.first_waits = current, waits
            self.idle_class = _in_idle_class(self.pid)
        self.last, self.last_waits = current, waits
        self.rss_max_kb = max(self.rss_max_kb, current.rss_kb)

    def result(self) -> Json:
        if self.first is None or self.last is None:
            return {"pid": self.pid, "found": False}
        wall = self.last.at - self.first.at
        cpu = self.last.cpu_seconds - self.first.cpu_seconds
        return {
            "pid": self.pid,
            "found": True,
            "exited_during_window": self.gone,
            "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else None,
            "cpu_seconds": round(cpu, 3),
            "runqueue_wait_ms_per_s": wait_ms_per_s(self.first_waits, self.last_waits, wall),
            "idle_class": self.idle_class,
            "rss_kb": self.last.rss_kb,
            "rss_max_kb": self.rss_max_kb,
        }


@dataclass(slots=True)
class WindowProbe:
    """Samples this process and the server's processes at the edges of the measured window.

    CPU% is 100 per fully busy core, so a single-threaded process tops out at 100. With
    `follow_children` the server is `server_pids` and all their descendants, looked for again at
    every sample: a server that forks a process per client (OpenTAKServer) forks while the run
    connects, after the PIDs were given.
    """

    server_pids: tuple[int, ...]
    follow_children: bool = False
    watches: list[ProcWatch] = field(default_factory=list)
    pss_kb: dict[int, int] = field(default_factory=dict)
    self_start: tuple[float, float] | None = None
    self_stop: tuple[float, float] | None = None
    self_waits_start: dict[int, int] | None = None
    self_waits_stop: dict[int, int] | None = None
    system_start: tuple[float, float, float] | None = None
    system_stop: tuple[float, float, float] | None = None
    others_start: dict[int, tuple[str, float]] = field(default_factory=dict)
    others_stop: dict[int, tuple[str, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.watches = [ProcWatch(pid) for pid in self.server_pids]
        self.sample()
        self.self_start = (time.monotonic(), self_cpu_seconds())
        self.self_waits_start = read_waits(os.getpid())
        self.system_start = system_cpu_seconds()
        self.others_start = other_processes_cpu(self._ours())

    def _ours(self) -> set[int]:
        return {os.getpid(), os.getppid(), *self.server_pids, *(w.pid for w in self.watches)}

    def sample(self) -> None:
        if self.follow_children:
            known = {watch.pid for watch in self.watches}
            self.watches += [
                ProcWatch(pid) for pid in process_tree(self.server_pids) if pid not in known
            ]
        for watch in self.watches:
            if not watch.gone:
                watch.sample()

    def stop(self) -> None:
        self.self_stop = (time.monotonic(), self_cpu_seconds())
        self.self_waits_stop = read_waits(os.getpid())
        self.system_stop = system_cpu_seconds()
        self.others_stop = other_processes_cpu(self._ours())
        self.sample()
        # NOTE: read once, at the end: smaps_rollup walks the page tables of the whole process.
        self.pss_kb = {
            watch.pid: kb for watch in self.watches
            if not watch.gone and (kb := read_pss_kb(watch.pid)) is not None
        }

    def generator_result(self) -> Json:
        cpu_percent = wait = None
        if self.self_start is not None and self.self_stop is not None:
            wall = self.self_stop[0] - self.self_start[0]
            cpu = self.self_stop[1] - self.self_start[1]
            cpu_percent = round(100.0 * cpu / wall, 1) if wall > 0 else None
            wait = wait_ms_per_s(self.self_waits_start, self.self_waits_stop, wall)
        return {
            "pid": os.getpid(), "cpu_percent": cpu_percent, "runqueue_wait_ms_per_s": wait,
            "rss_max_kb": self_max_rss_kb(),
        }

    def system_result(self) -> Json:
        """The whole machine over the window, so a result disturbed by other work can be told
        apart: busy% well above generator + server means something else was running."""
        busy_percent = steal_percent = None
        if self.system_start is not None and self.system_stop is not None:
            busy, total, steal = (
                stop - start
                for start, stop in zip(self.system_start, self.system_stop, strict=True)
            )
            cores = os.cpu_count() or 1
            if total > 0:
                busy_percent = round(100.0 * cores * busy / total, 1)
                steal_percent = round(100.0 * cores * steal / total, 1)
        return {
            "cpu_busy_percent": busy_percent,
            "cpu_steal_percent": steal_percent,
            "loadavg": list(os.getloadavg()),
            **self._others_result(),
        }

    def _others_result(self) -> Json:
        """CPU% of the user-space processes that are neither this one nor the server's, over the
        window: on a shared machine, the work that disturbed the measurement (processes that
        started or ended inside the window are missed)."""
        if self.self_start is None or self.self_stop is None:
            return {"other_processes_cpu_percent": None, "top_other_processes": []}
        wall = self.self_stop[0] - self.self_start[0]
        used = [
            (cpu - self.others_start[pid][1], pid, name)
            for pid, (name, cpu) in self.others_stop.items()
            if pid in self.others_start
        ]
        used.sort(reverse=True)
        total = sum(cpu for cpu, _, _ in used)
        return {
            "other_processes_cpu_percent": round(100.0 * total / wall, 1) if wall > 0 else None,
            "top_other_processes": [
                {"command": _command(pid, name), "cpu_percent": round(100.0 * cpu / wall, 1)}
                for cpu, pid, name in used[:3]
                if wall > 0 and cpu > 0
            ],
        }

    def server_result(self) -> Json:
        per_pid = [watch.result() for watch in self.watches]
        found = [entry for entry in per_pid if entry["found"]]
        for entry in found:
            entry["pss_kb"] = self.pss_kb.get(entry["pid"])
        return {
            "follow_children": self.follow_children,
            "processes": len(found),
            "processes_at_end": sum(1 for entry in found if not entry["exited_during_window"]),
            "pids": per_pid,
            "cpu_percent_total": (
                round(sum(entry["cpu_percent"] or 0.0 for entry in found), 1) if found else None
            ),
            "rss_kb_total": sum(entry["rss_kb"] for entry in found) if found else None,
            # RSS counts pages shared between forks once per process; PSS divides them up.
            "pss_kb_total": sum(self.pss_kb.values()) if self.pss_kb else None,
            "cpu_seconds_total": (
                round(sum(entry["cpu_seconds"] for entry in found), 3) if found else None
            ),
            # Summed over processes: 1000 is one process waiting for a core all the time. Not
            # those in the idle class (otszmq's store writer): they wait by design, for no one.
            "runqueue_wait_ms_per_s_total": _total(
                [entry["runqueue_wait_ms_per_s"] for entry in found if not entry["idle_class"]]
            ),
        }


def _in_idle_class(pid: int) -> bool:
    try:
        return os.sched_getscheduler(pid) == os.SCHED_IDLE
    except OSError:
        return False


def _total(values: list[float | None]) -> float | None:
    """The sum, or None if any is unknown (a partial sum would read as a smaller wait)."""
    known = [value for value in values if value is not None]
    return round(sum(known), 1) if known and len(known) == len(values) else None


def raise_fd_limit(needed: int) -> Json:
    """Raises this process's RLIMIT_NOFILE soft limit to at least `needed` if the hard limit
    allows (and the hard limit too when we may, i.e. as root); reports what it ended at."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, needed)
    error = None
    try:
        if hard != resource.RLIM_INFINITY and wanted > hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        elif wanted > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        error = str(exc)
    soft_now, hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"needed": needed, "soft": soft_now, "hard": hard_now, "error": error}


def fd_count(pid: int) -> int | None:
    """Open file descriptors of `pid` (sockets included), or None if it cannot be read."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_limit(pid: int) -> int | None:
    """The soft `Max open files` of `pid` from /proc/PID/limits (None: unreadable/unlimited)."""
    try:
        text = Path(f"/proc/{pid}/limits").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else None
    return None


def read_pss_kb(pid: int) -> int | None:
    """Proportional set size of `pid` (shared pages divided among their users), kB; None when
    the process is gone or its smaps_rollup cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def server_processes(roots: tuple[int, ...], follow_children: bool) -> tuple[int, ...]:
    """The processes to measure: `roots`, or with `follow_children` the roots and every
    descendant they have now."""
    return tuple(process_tree(roots)) if follow_children else roots


def pss_kb_total(pids: tuple[int, ...]) -> int | None:
    """Summed PSS of the processes among `pids` that can be read; None if none can."""
    found = [kb for pid in pids if (kb := read_pss_kb(pid)) is not None]
    return sum(found) if found else None


def rss_kb(pids: tuple[int, ...]) -> tuple[int, dict[int, int]]:
    """Summed and per-PID RSS (kB) of the processes still alive among `pids`."""
    per_pid: dict[int, int] = {}
    for pid in pids:
        sample = read_proc(pid)
        if sample is not None:
            per_pid[pid] = sample.rss_kb
    return sum(per_pid.values()), per_pid


PF_KTHREAD = 0x00200000


def other_processes_cpu(ours: set[int]) -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) of every user-space process not in `ours`."""
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[6]) & PF_KTHREAD:
            continue
        found[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return found


def _command(pid: int, name: str) -> str:
    """The start of `pid`'s command line (its name if it is gone), to tell what disturbed a run."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return name
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:120] or name


def children(pid: int) -> list[int]:
    """Direct children of `pid`, as `pgrep -P` lists them (from /proc, no subprocess)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text(encoding="ascii")
        except OSError:
            continue
        kids.extend(int(kid) for kid in text.split())
    return kids


def process_tree(roots: tuple[int, ...]) -> list[int]:
    """`roots` that still exist and all their descendants now, each once."""
    found: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found and Path(f"/proc/{pid}").exists():
            found.append(pid)
            stack.extend(children(pid))
    return found
