"""Fault injection for the local mesh: make ``deploy_model`` die at a named point of a step.

``SALESMESH_FAULTS=crash-at:canary`` (local backend only; :class:`~salesmesh.settings.Settings`
refuses it on gcp) makes the function server SIGKILL its whole process group (the
functions-framework server and its gunicorn worker: the function instance dies as a whole) when
a rollout step reaches that point: the way tests prove that a function killed in any state of a
rollout still converges. The points, in the order a rollout meets them:

- ``deploying``: the decision to deploy is written, the deployment not started;
- ``operation``: the deployment started, its operation not yet in the ledger;
- ``canary``: the canary split is decided, not yet applied;
- ``promoting``: the aliases moved, the promotion not yet written.
"""

from __future__ import annotations

import os
import signal

from salesmesh.settings import Settings

POINTS = ("deploying", "operation", "canary", "promoting")


def crash_point(settings: Settings, point: str) -> None:
    """Die here, as a killed function would, if ``settings.faults`` asks for it."""
    if f"crash-at:{point}" in settings.faults:
        os.killpg(os.getpgid(0), signal.SIGKILL)
