"""Cloud Functions locally: one ``functions-framework`` server process per function.

Each server is started exactly as
``functions-framework --target ENTRY --source functions/NAME/main.py --signature-type cloudevent
--host 127.0.0.1 --port N`` would start it (the venv's console script when it is beside the
interpreter, else ``python -m functions_framework`` with the same flags), in its own process
group (:func:`salesmesh.local.processes.start`) so :meth:`FunctionServer.stop` can end it and
anything it forked in one signal. The function's stdout and stderr go to
``<state_dir>/logs/functions/NAME.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from salesmesh.errors import MeshError
from salesmesh.local.processes import await_ready, serving, start, stop_child, tail
from salesmesh.settings import ENV_VARS, Settings


class FunctionStartError(MeshError):
    """A function server died or never listened; the message holds its stderr's tail."""


def function_env(settings: Settings, storage_host: str) -> dict[str, str]:
    """What a local function gets on top of the mesh's environment."""
    env = {
        "STORAGE_EMULATOR_HOST": storage_host,
        "GOOGLE_CLOUD_PROJECT": settings.project,
        ENV_VARS["backend"]: "local",
        ENV_VARS["state_dir"]: str(Path(settings.state_dir).resolve()),
        ENV_VARS["horizon"]: str(settings.horizon),
        ENV_VARS["upload_prefix"]: settings.upload_prefix,
        ENV_VARS["quarantine_prefix"]: settings.quarantine_prefix,
        ENV_VARS["replace_prefix"]: settings.replace_prefix,
        ENV_VARS["history_quiet"]: repr(settings.history_quiet),
        ENV_VARS["endpoint"]: settings.endpoint,
        ENV_VARS["alerts_topic"]: settings.alerts_topic,
        ENV_VARS["alert_scale"]: repr(settings.alert_scale),
    }
    for role in ("data", "model", "state"):
        env[ENV_VARS[f"{role}_bucket"]] = settings.bucket(role)
    return env


def framework_command() -> list[str]:
    """The ``functions-framework`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "functions-framework"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "functions_framework"]


class FunctionServer:
    """One function under functions-framework on 127.0.0.1:``port``."""

    def __init__(
        self,
        name: str,
        entry_point: str,
        source: Path,
        port: int,
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        self.name = name
        self.entry_point = entry_point
        self.source = source
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where the function's CloudEvents are POSTed."""
        return f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        """The functions-framework command line for this function."""
        return [
            *framework_command(),
            "--target",
            self.entry_point,
            "--source",
            str(self.source),
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self, ready_timeout: float = 15.0) -> None:
        """Start the process and wait until its port accepts connections."""
        self.process = start(self.command(), self.log_path, env={**os.environ, **self.env})

        def failed(code: int | None) -> FunctionStartError:
            how = (
                f"not listening on port {self.port} after {ready_timeout:.0f}s"
                if code is None
                else f"exited with {code} before listening"
            )
            return FunctionStartError(f"function {self.name} {how}:\n{tail(self.log_path)}")

        deadline = time.monotonic() + ready_timeout
        process = self.process
        await_ready(process, lambda: serving(process, self.port), deadline, failed)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``, and reap the process."""
        process, self.process = self.process, None
        if process is not None:
            stop_child(process, timeout)  # with anything the server forked into its group
