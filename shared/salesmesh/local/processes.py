"""Child processes of the local mesh, and the JSON files that record them.

Function servers, the router, prediction servers and training watchers all start through
:func:`start`: detached in their own session, stdout and stderr appended to a log file. Their
own session lets them outlive whoever started them (a Ctrl-C in its terminal does not reach
them), and makes each one a process group, so :func:`stop` reaches whatever they forked with one
signal. Readiness (:func:`await_ready`) is the caller's test, polled while the child runs: a
port that accepts connections (:func:`listening`), a health route, an announcement file.

A pid read back from a record may belong to another process by now: :func:`alive` checks the
command line for a mark (``salesmesh.serve``, ...) before anyone signals it. Children are
registered as they start and :func:`reap` collects the finished ones, so a long-running parent
(a function server that runs for days) keeps no zombies, which would still answer signal 0.

Records (``endpoint.json``, ``router.json``, ``run.json``) are replaced whole by
:func:`write_json`: readers in other processes see the old document or the new, never half.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

_children: list[subprocess.Popen[bytes]] = []
_children_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port`` now."""
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def listening_in_group(pgid: int, port: int) -> bool | None:
    """True if a process of group ``pgid`` holds the socket listening on ``port``; False if
    someone else's is; None where ``/proc`` cannot tell (not Linux). A child whose free port
    another process took while it started must not be taken for ready because "the port
    answers": the squatter answers."""
    tables = [Path(t) for t in ("/proc/net/tcp", "/proc/net/tcp6") if Path(t).exists()]
    if not tables:
        return None  # no /proc (macOS, BSD): the caller falls back to "the port answers"
    inodes = set()
    try:
        for table in tables:
            with suppress(FileNotFoundError):
                for line in table.read_text().splitlines()[1:]:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        if not inodes:
            return False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with suppress(OSError, ValueError, IndexError):
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[2]) != pgid:  # field 5 of stat: the process group
                    continue
                for fd in (proc / "fd").iterdir():
                    with suppress(OSError):
                        if str(fd.readlink()) in inodes:
                            return True
    except OSError:
        return None
    return False


def serving(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once ``process`` (or a child in its group, as a server's workers are) listens on
    ``port``: by ``/proc`` where there is one, else by the port answering at all."""
    if not listening(port):
        return False
    owned = listening_in_group(process.pid, port)  # start() makes each child a group leader
    return True if owned is None else owned


def start(
    command: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, output appended to ``log``; OSError if it cannot.

    ``env`` None inherits this process's environment. The child is registered for :func:`reap`.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command),
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    with _children_lock:
        _children.append(process)
    return process


def await_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    deadline: float,
    failed: Callable[[int | None], BaseException],
    *,
    interval: float = 0.05,
) -> None:
    """Return once ``ready()`` holds while ``process`` runs.

    If it exits first or ``time.monotonic()`` passes ``deadline`` (or the wait is interrupted),
    stop its process group, then raise ``failed(exit code, or None for the deadline)``; the
    log is complete by then, so the error can quote its tail.
    """
    try:
        while (code := process.poll()) is None:
            if ready():
                return
            if time.monotonic() > deadline:
                break
            time.sleep(interval)  # start-up only: bounded by the deadline
    except BaseException:
        stop_child(process)
        raise
    stop_child(process)
    raise failed(code)


def alive(pid: object, mark: str | None = None) -> bool:
    """True if ``pid`` is a live process, not a zombie, whose command line holds ``mark`` if one
    is given (so a pid reused by another program does not count)."""
    if not isinstance(pid, int):
        return False
    if reap(pid):
        return True  # our own child, not yet reaped: its pid cannot have been reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs: the signal is all we can know
    try:
        command = (proc / "cmdline").read_bytes()
        tasks = [
            (t / "stat").read_text().rpartition(")")[2].split()[0] for t in proc.glob("task/*")
        ]
    except (OSError, IndexError):
        return False  # exited between the checks
    # a leader whose other threads still run reads "Z" too: alive until no thread is left
    return any(state not in ("Z", "X") for state in tasks) and (
        mark is None or mark.encode() in command
    )


def stop(pids: Iterable[object], mark: str | None = None, timeout: float = 5.0) -> list[int]:
    """SIGTERM the process group of each running pid at once, then SIGKILL the groups after
    ``timeout`` (or as soon as the leaders are gone, for what they left behind); returns the
    pids that were running."""
    running = [pid for pid in pids if isinstance(pid, int) and alive(pid, mark)]
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for pid in running:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)  # SIGKILL also reaches stragglers of a gone leader
        deadline = time.monotonic() + wait
        # identity was checked above; an exiting process's command line reads empty
        while any(alive(pid) for pid in running) and time.monotonic() < deadline:
            time.sleep(0.02)
    reap()  # one that died after the last check must not stay a zombie
    return running


def stop_child(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """:func:`stop` a child that :func:`start` started, with whatever it left in its group."""
    if process.returncode is not None:
        return  # reaped before: its pid, and so its group id, may be someone else's by now
    if process.poll() is None:
        stop([process.pid], timeout=timeout)  # its SIGKILL round reaches the whole group
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # it exited on its own: stragglers go too


def reap(pid: int | None = None) -> bool:
    """Collect our finished children; True if ``pid`` is one of ours still running."""
    with _children_lock:
        _children[:] = [child for child in _children if child.poll() is None]
        return any(child.pid == pid for child in _children)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, or ``(no log)``."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def file_key(path: Path) -> tuple[int, int, int] | None:
    """What changes when ``path`` is replaced or rewritten (inode, mtime, size); None if it is
    absent. Readers that cache a file per request reread it only when this changes."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is no such file."""
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return found


def write_json(path: Path, document: Mapping[str, Any], indent: int = 1) -> None:
    """Replace ``path`` atomically: readers see the old document or the new, never half."""
    # one temporary name per writer thread: two writers never share a half-written file
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(document, indent=indent) + "\n")
    temporary.replace(path)
