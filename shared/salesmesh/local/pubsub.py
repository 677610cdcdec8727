"""The official Pub/Sub emulator of this machine's gcloud CLI, run as a child of the mesh.

Found through gcloud's SDK root (the ``gcloud`` binary's real location, else ``gcloud info``),
started from its own launcher, ``platform/pubsub-emulator/bin/cloud-pubsub-emulator``, on
127.0.0.1 in its own process group. The launcher ``exec``s java, and ``gcloud beta emulators
pubsub start`` would put a wrapper in front of it whose death leaves java running; starting the
launcher directly and stopping the whole group by its id leaves nothing behind.

Clients reach it with ``PUBSUB_EMULATOR_HOST`` (:meth:`PubSubEmulator.env`), the same
:mod:`salesmesh.backends.gcp_pubsub` code as on Google Cloud. What the emulator (0.8.x) does,
checked here: subscriptions need ``ack_deadline_seconds >= 10`` and resource names of at least
3 characters; it honours ``dead_letter_policy`` (after ``max_delivery_attempts`` nacks the
message goes to the dead-letter topic with ``CloudPubSubDeadLetterSource*`` attributes) and
reports ``delivery_attempt``; a pull with nothing to give answers at once, empty; it keeps
everything in memory (the launcher has no data-dir flag).

Where :func:`available` names a reason, use :class:`InProcessPubSub` instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from salesmesh.errors import MeshError
from salesmesh.local import processes
from salesmesh.local.inprocess_pubsub import InProcessPubSub

__all__ = [
    "InProcessPubSub",
    "PubSubEmulator",
    "PubSubEmulatorError",
    "available",
    "clients",
    "launcher",
]

JAVA = "java"
_LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
START_TIMEOUT = 30.0  # seconds; it answers in about 2 s on this machine
PORT_ATTEMPTS = 3
# what the emulator's log says once it serves, and when its port was taken first
LISTENING = "Server started, listening on"
BIND_FAILED = "java.net.BindException"
MIN_ACK_DEADLINE = 10  # the emulator refuses less


class _PortTakenError(Exception):
    """The port was someone else's: another free one may do."""


class PubSubEmulatorError(MeshError):
    """The Pub/Sub emulator is missing or did not start; the message says what to install."""


def _asked_root(gcloud: str, env: Mapping[str, str]) -> Path | None:
    """What ``gcloud info`` names as its SDK root (about 1-2 s: gcloud is a Python program)."""
    try:
        found = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=20,
            env=dict(env),
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(found) if found else None


def launcher(env: Mapping[str, str] = os.environ) -> Path:
    """The emulator's launcher script, or PubSubEmulatorError saying what is missing.

    The SDK root is first taken from where the ``gcloud`` binary really lives
    (``<sdk_root>/bin/gcloud`` behind any symlinks: instant); only when no launcher is there is
    ``gcloud info`` asked, for installs whose ``gcloud`` is a wrapper elsewhere.
    """
    gcloud = shutil.which("gcloud", path=env.get("PATH"))
    if gcloud is None:
        raise PubSubEmulatorError(
            "no gcloud CLI on PATH: install the Google Cloud CLI and its pubsub-emulator component"
        )
    beside = Path(gcloud).resolve().parent.parent
    script = beside / _LAUNCHER
    if not script.is_file():
        script = (_asked_root(gcloud, env) or beside) / _LAUNCHER
    if not script.is_file():
        raise PubSubEmulatorError(
            f"the gcloud CLI at {gcloud} lacks the Pub/Sub emulator ({script} is missing): "
            "run `gcloud components install pubsub-emulator` (or apt's "
            "google-cloud-cli-pubsub-emulator)"
        )
    if shutil.which(JAVA, path=env.get("PATH")) is None:
        raise PubSubEmulatorError("the Pub/Sub emulator needs Java 8+ on PATH; none found")
    return script


def available(env: Mapping[str, str] = os.environ) -> str | None:
    """None if the emulator can run here, else why not (no gcloud, no component, no java)."""
    try:
        launcher(env)
    except PubSubEmulatorError as exc:
        return str(exc)
    return None


class PubSubEmulator:
    """The official Pub/Sub emulator on 127.0.0.1, a child process in its own group."""

    def __init__(self, data_dir: Path | None = None, port: int = 0) -> None:
        """``data_dir`` holds its log (None: a temporary folder). Topics and messages live in
        the emulator's memory whatever it is: the launcher has no persistence flag, so a
        restarted emulator starts empty and :meth:`setup` runs again. ``port`` 0 picks a free
        one (and another, should it be taken while the JVM starts)."""
        self._given_port = port
        self.port = port or processes.free_port()
        self._data_dir = None if data_dir is None else Path(data_dir).resolve()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the value of ``PUBSUB_EMULATOR_HOST`` (no scheme)."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The emulator's pid (java's: the launcher execs it) while it runs."""
        return None if self._process is None else self._process.pid

    def env(self) -> dict[str, str]:
        """The environment that points google-cloud-pubsub clients at this emulator."""
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def start(self) -> None:
        """Start it and return once it accepts connections; PubSubEmulatorError otherwise.

        A free port can be taken by another process in the seconds the JVM takes to bind it
        (meshes and tests start side by side): the emulator is ready only once its own log says
        it listens on its port, so a squatter never passes for it, and a port lost that way
        is replaced by another free one (when the port was not given), up to three times."""
        if self._process is not None:
            return
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_on_port()
                return
            except _PortTakenError as exc:
                if self._given_port or attempt == PORT_ATTEMPTS:
                    raise PubSubEmulatorError(str(exc)) from None
                self.port = processes.free_port()

    def _start_on_port(self) -> None:
        script = launcher()
        if processes.listening(self.port):
            raise _PortTakenError(f"cannot start the Pub/Sub emulator: {self.host} is taken")
        command = [str(script), "--host=127.0.0.1", f"--port={self.port}"]
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self._log = self._data_dir / "pubsub-emulator.log"
        else:
            self._log = Path(tempfile.mkdtemp(prefix="pubsub-emulator-")) / "emulator.log"
        log, port = self._log, self.port
        offset = log.stat().st_size if log.exists() else 0  # the log is appended to
        process = processes.start(command, log)

        def ready() -> bool:
            with log.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode(errors="replace")
            if BIND_FAILED in text:
                raise _PortTakenError(
                    f"cannot start the Pub/Sub emulator: {self.host} was taken while it started"
                )
            return f"{LISTENING} {port}" in text and processes.serving(process, port)

        def failed(code: int | None) -> BaseException:
            why = "did not answer in time" if code is None else f"exited with {code}"
            return PubSubEmulatorError(
                f"the Pub/Sub emulator on {self.host} {why}; its log ({log}):\n"
                f"{processes.tail(log)}"
            )

        processes.await_ready(process, ready, time.monotonic() + START_TIMEOUT, failed)
        self._process = process

    def stop(self) -> None:
        """Stop its whole process group (java included) and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None:
            processes.stop_child(process)

    def setup(
        self,
        project: str,
        topic: str,
        subscription: str,
        dead_letter_topic: str,
        max_delivery_attempts: int = 5,
        *,
        ack_deadline_seconds: int = MIN_ACK_DEADLINE,
    ) -> None:
        """Create the topic, its subscription with a dead-letter policy, the dead-letter topic
        and a subscription on it named ``<dead_letter_topic>-sub`` (messages to a topic without
        one are dropped), unless they exist. The real client, as Terraform's resources are."""
        if ack_deadline_seconds < MIN_ACK_DEADLINE:
            raise ValueError(f"the emulator needs ack_deadline_seconds >= {MIN_ACK_DEADLINE}")
        if not 5 <= max_delivery_attempts <= 100:  # Pub/Sub's own bounds
            raise ValueError(f"max_delivery_attempts must be 5-100: {max_delivery_attempts}")
        publisher, subscriber = self._clients()
        try:
            dead_path = publisher.topic_path(project, dead_letter_topic)
            for path in (publisher.topic_path(project, topic), dead_path):
                _create(publisher.create_topic, {"name": path})
            _create(
                subscriber.create_subscription,
                {
                    "name": subscriber.subscription_path(project, f"{dead_letter_topic}-sub"),
                    "topic": dead_path,
                    "ack_deadline_seconds": ack_deadline_seconds,
                },
            )
            _create(
                subscriber.create_subscription,
                {
                    "name": subscriber.subscription_path(project, subscription),
                    "topic": publisher.topic_path(project, topic),
                    "ack_deadline_seconds": ack_deadline_seconds,
                    "dead_letter_policy": {
                        "dead_letter_topic": dead_path,
                        "max_delivery_attempts": max_delivery_attempts,
                    },
                },
            )
        finally:
            subscriber.close()
            publisher.transport.close()

    def _clients(self) -> tuple[Any, Any]:
        return clients(self.host)

    def __enter__(self) -> PubSubEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def clients(host: str) -> tuple[Any, Any]:
    """A publisher and a subscriber on plain-text gRPC to the emulator at ``host``, as the
    library builds them for ``PUBSUB_EMULATOR_HOST``, without changing this process's
    environment. Close them with ``publisher.transport.close()`` and ``subscriber.close()``."""
    import importlib

    grpc: Any = importlib.import_module("grpc")  # ships no type information
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))
    )
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))
    )
    return publisher, subscriber


def _create(method: Any, request: Mapping[str, Any]) -> None:
    from google.api_core.exceptions import AlreadyExists, GoogleAPIError

    try:
        method(request=dict(request))
    except AlreadyExists:
        pass  # idempotent across restarts with a data_dir
    except GoogleAPIError as exc:
        raise PubSubEmulatorError(f"creating {request['name']} on the emulator: {exc}") from exc
