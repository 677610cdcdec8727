"""The TrainingLauncher contract, run against every backend (fsspec's abstract test style).

A backend's test module subclasses :class:`LauncherContract` and provides:

- a ``launcher`` fixture: a fresh, empty launcher;
- a ``request_for`` fixture: ``run_id -> TrainingRequest`` with data the job can train on;
- ``job_inputs(launcher, run)``: what the job really received, as
  ``{"data": uri, "horizon": n, "model_dir": folder the artifact lands in}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from salesmesh.ports import RunState, TrainingLauncher, TrainingRequest, TrainingRun

RequestFor = Callable[[str], TrainingRequest]


def same_run(first: TrainingRun, second: TrainingRun) -> bool:
    """True if both describe one run (the state may have moved on in between)."""
    fields = ("run_id", "data_uri", "output_uri", "created", "log", "backend_id")
    return all(getattr(first, name) == getattr(second, name) for name in fields)


class LauncherContract:
    """What every TrainingLauncher backend must do."""

    def job_inputs(self, launcher: Any, run: TrainingRun) -> dict[str, Any]:
        raise NotImplementedError

    def test_launch_returns_the_requested_run(
        self, launcher: TrainingLauncher, request_for: RequestFor
    ) -> None:
        """A fresh launch reports the request's run id and data, with a creation time and id."""
        request = request_for("r1")
        run = launcher.launch(request)
        assert (run.run_id, run.data_uri) == ("r1", request.data_uri)
        assert run.state in set(RunState)
        assert run.created.endswith("Z")
        assert run.backend_id

    def test_launching_twice_gives_one_run(
        self, launcher: TrainingLauncher, request_for: RequestFor
    ) -> None:
        """The same run id launched twice is one run, and both calls return its record."""
        first = launcher.launch(request_for("r1"))
        second = launcher.launch(request_for("r1"))
        assert same_run(first, second)
        assert [run.run_id for run in launcher.list()] == ["r1"]

    def test_relaunch_keeps_the_original_request(
        self, launcher: TrainingLauncher, request_for: RequestFor
    ) -> None:
        """A second launch with a changed request still returns the first run unchanged."""
        first = launcher.launch(request_for("r1"))
        changed = replace(request_for("r1"), data_uri=request_for("r1").data_uri + ".other")
        again = launcher.launch(changed)
        assert same_run(first, again)
        assert again.data_uri == first.data_uri

    def test_get_returns_the_launched_run(
        self, launcher: TrainingLauncher, request_for: RequestFor
    ) -> None:
        """get(run_id) returns the record launch returned."""
        run = launcher.launch(request_for("r1"))
        found = launcher.get("r1")
        assert found is not None
        assert same_run(run, found)

    def test_unknown_run_is_none(self, launcher: TrainingLauncher) -> None:
        """get() of a run id never launched is None, and an empty launcher lists nothing."""
        assert launcher.get("never-launched") is None
        assert launcher.list() == []

    def test_list_has_every_run_oldest_first(
        self, launcher: TrainingLauncher, request_for: RequestFor
    ) -> None:
        """list() returns each launched run once, in launch order."""
        launcher.launch(request_for("first"))
        launcher.launch(request_for("second"))
        launcher.launch(request_for("first"))
        assert [run.run_id for run in launcher.list()] == ["first", "second"]

    def test_request_reaches_the_job(
        self, launcher: TrainingLauncher, request_for: RequestFor
    ) -> None:
        """The job trains on the request's data and horizon and writes under its output."""
        request = request_for("r1")
        run = launcher.launch(request)
        assert run.output_uri.startswith(request.output_uri.rstrip("/"))
        assert self.job_inputs(launcher, run) == {
            "data": request.data_uri,
            "horizon": request.horizon,
            "model_dir": run.output_uri,
        }
