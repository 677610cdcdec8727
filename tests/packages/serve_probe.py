"""Serve CloudEvents from a built function package, the way Cloud Functions would.

    python -I serve_probe.py PACKAGE TARGET PLAN.json

Run by a package's own virtualenv in isolated mode, so ``sys.path`` holds that venv's
site-packages, the standard library and, inserted here, ``PACKAGE``: nothing of the project.
``PLAN.json`` holds ``{"cold": [event, ...], "faked": [step, ...], "cloud": {...}}``. The cold
events are delivered first, with nothing faked, and the modules they made the process import
are noted. Then, only if there are faked steps, the services that cannot run here (Vertex AI,
Resource Manager, Cloud Tasks) are faked at their generated clients by ``probe_cloud`` (set up
with ``cloud``) and the steps taken in order, each one of:

- an event (``headers`` and ``data``), POSTed as Eventarc would;
- ``{"dispatch": "task"}``: the oldest Cloud Tasks task not yet run, POSTed as Cloud Tasks
  would (its URL's path, its headers and Cloud Tasks' own, its body);
- ``{"finish": "deployments"}``: every deployment in flight ends, its model serving.

Credentials are the only other fake: Application Default Credentials cannot exist on this
machine. Cloud Storage stays real (the emulator, through ``STORAGE_EMULATOR_HOST``).

The last line of stdout is ``PROBE {json}``: where salesmesh came from, any ``sys.path`` entry
outside the package and the venv, each step's status and the heavy modules loaded by then, and
what the fakes saw (``probe_cloud.FakeCloud.report``: requests, tasks, the endpoint, any RPC
they do not serve).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HEAVY = ("google.cloud.aiplatform", "lightgbm", "sklearn", "matplotlib")


def deliver(client: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST each binary-mode CloudEvent; its status and the heavy modules loaded so far."""
    results = []
    for event in events:
        response = client.post("/", headers=event["headers"], data=json.dumps(event["data"]))
        heavy = [name for name in HEAVY if name in sys.modules]
        results.append({"status": response.status_code, "heavy": heavy})
    return results


def load_fakes() -> Any:
    """``probe_cloud``, from its file: imported only now, after the cold events."""
    path = Path(__file__).with_name("probe_cloud.py")
    spec = importlib.util.spec_from_file_location("probe_cloud", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and mock look their module up
    spec.loader.exec_module(module)
    return module


def act(client: Any, fake: Any, step: dict[str, Any]) -> dict[str, Any]:
    """One step of the faked phase: an event, a Cloud Tasks dispatch, or deployments ending."""
    if "finish" in step:
        return {"finished": fake.finish_deployments()}
    if "dispatch" in step:
        found = fake.dispatch()
        if found is None:
            return {"status": None, "heavy": [], "task": None}
        path, headers, body = found
        response = client.post(path, headers=headers, data=body)
        heavy = [name for name in HEAVY if name in sys.modules]
        return {
            "status": response.status_code,
            "heavy": heavy,
            "task": headers["X-CloudTasks-TaskName"],
        }
    return deliver(client, [step])[0]


def main(package: str, target: str, plan_file: str) -> dict[str, Any]:
    plan = json.loads(Path(plan_file).read_text())
    sys.path.insert(0, package)
    from functions_framework import create_app

    import salesmesh

    app = create_app(target=target, source=f"{package}/main.py", signature_type="cloudevent")
    client = app.test_client()
    own = (package, sys.prefix, sys.base_prefix)
    report: dict[str, Any] = {
        "salesmesh": salesmesh.__file__,
        "foreign_paths": [p for p in sys.path if p and not p.startswith(own)],
        "results": deliver(client, plan.get("cold", [])),
        "vertex": [],
    }
    if plan.get("faked"):
        cloud = load_fakes()
        fake = cloud.FakeCloud(**plan.get("cloud", {}))
        with cloud.faked(fake):
            report["results"] += [act(client, fake, step) for step in plan["faked"]]
        report |= fake.report()
    return report


if __name__ == "__main__":
    print("PROBE " + json.dumps(main(*sys.argv[1:4])))
