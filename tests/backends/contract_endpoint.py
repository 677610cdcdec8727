"""The Endpoint contract, run against every backend (fsspec's abstract test style).

A backend's test module subclasses :class:`EndpointContract` and provides:

- an ``endpoint`` fixture: a fresh endpoint with nothing deployed;
- a ``version_for`` fixture: ``n -> ModelVersion``, distinct deployable versions for n = 1, 2, 3
  whose artifacts forecast the series in ``PROBE``;
- a ``broken_version`` fixture: a version whose artifact passes its manifest check but cannot
  serve, so its deployment never becomes healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from salesmesh.errors import DeployError, PredictionError
from salesmesh.ports import Endpoint, ModelVersion, Operation

VersionFor = Callable[[int], ModelVersion]
PROBE = {"store_id": "S01", "product_id": "P001", "horizon": 7}


def finish(endpoint: Endpoint, name: str, limit: float = 120.0) -> Operation:
    """Poll operation ``name`` until done; until then it must read as pending under its name."""
    deadline = time.monotonic() + limit
    while not (found := endpoint.operation(name)).done:
        assert found == Operation(name, done=False), found
        assert time.monotonic() < deadline, f"{name} still not done after {limit:g} s"
        time.sleep(0.05)
    return found


class EndpointContract:
    """What every Endpoint backend must do."""

    def test_empty_endpoint(self, endpoint: Endpoint) -> None:
        """Nothing deployed: no models, an empty split."""
        assert endpoint.deployed() == []
        assert endpoint.traffic() == {}

    def test_first_model_takes_all_traffic(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """The first deployment takes 100 % even when asked for 0, as on Vertex AI."""
        first = endpoint.deploy(version_for(1), 0)
        assert first.version_id == version_for(1).version_id
        assert [d.id for d in endpoint.deployed()] == [first.id]
        assert endpoint.traffic() == {first.id: 100}

    def test_first_model_cannot_take_part_of_traffic(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """A first deployment asking for 1-99 % is refused and deploys nothing."""
        with pytest.raises(ValueError):
            endpoint.deploy(version_for(1), 10)
        assert endpoint.deployed() == []

    def test_deploy_scales_the_others(self, endpoint: Endpoint, version_for: VersionFor) -> None:
        """A canary at 10 % leaves the rest to the models already deployed."""
        first = endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 10)
        assert endpoint.traffic() == {first.id: 90, second.id: 10}
        assert [d.id for d in endpoint.deployed()] == [first.id, second.id]
        assert first.id != second.id

    def test_deploy_at_zero_takes_no_traffic(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """A warm model deployed at 0 % is deployed and listed with a 0 share."""
        first = endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 0)
        assert endpoint.traffic() == {first.id: 100, second.id: 0}

    def test_set_traffic_replaces_the_split(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """set_traffic moves all traffic; models left out of the split get 0."""
        first = endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 0)
        endpoint.set_traffic({second.id: 100})
        assert endpoint.traffic() == {first.id: 0, second.id: 100}
        endpoint.set_traffic({first.id: 30, second.id: 70})
        assert endpoint.traffic() == {first.id: 30, second.id: 70}

    def test_set_traffic_refuses_bad_splits(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """Splits not summing to 100, with bad shares or unknown ids change nothing."""
        first = endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 0)
        for bad in (
            {first.id: 50, second.id: 40},
            {first.id: 110, second.id: -10},
            {first.id: 50, "no-such-model": 50},
        ):
            with pytest.raises(ValueError):
                endpoint.set_traffic(bad)
        assert endpoint.traffic() == {first.id: 100, second.id: 0}

    def test_undeploy_a_model_without_traffic(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """A model at 0 % can be undeployed; the split no longer names it."""
        first = endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 0)
        endpoint.undeploy(second.id)
        assert [d.id for d in endpoint.deployed()] == [first.id]
        assert endpoint.traffic() == {first.id: 100}

    def test_undeploy_refuses_a_model_with_traffic(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """Undeploying a model that takes traffic is refused while others are deployed."""
        first = endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 0)
        with pytest.raises(ValueError):
            endpoint.undeploy(first.id)
        assert endpoint.traffic() == {first.id: 100, second.id: 0}

    def test_undeploy_unknown_model(self, endpoint: Endpoint) -> None:
        """Undeploying an id that is not deployed raises KeyError."""
        with pytest.raises(KeyError):
            endpoint.undeploy("no-such-model")

    def test_predict_through_the_split(self, endpoint: Endpoint, version_for: VersionFor) -> None:
        """A prediction names the deployed model that answered and forecasts each day."""
        first = endpoint.deploy(version_for(1), 0)
        response = endpoint.predict([PROBE])
        assert response["deployedModelId"] == first.id
        (prediction,) = response["predictions"]
        assert (prediction["store_id"], prediction["product_id"]) == ("S01", "P001")
        assert len(prediction["forecast"]) == 7
        assert all(day["sales"] >= 0 for day in prediction["forecast"])

    def test_predict_carries_quantiles_as_numbers(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """Each day carries p10 .. p90 as ordered numbers; "quantiles": false, a boolean on the
        wire, leaves date and sales only."""
        endpoint.deploy(version_for(1), 0)
        response = endpoint.predict([PROBE, {**PROBE, "quantiles": False}])
        banded, point = (p["forecast"] for p in response["predictions"])
        levels = ("p10", "p25", "p50", "p75", "p90")
        for day in banded:
            assert set(day) == {"date", "sales", *levels}
            values = [day[name] for name in levels]
            assert all(isinstance(v, int | float) for v in values)
            assert values[0] >= 0 and values == sorted(values)
        assert point == [{"date": d["date"], "sales": d["sales"]} for d in banded]

    def test_predict_goes_where_the_traffic_is(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """With all traffic moved to the second model, every prediction comes from it."""
        endpoint.deploy(version_for(1), 0)
        second = endpoint.deploy(version_for(2), 0)
        endpoint.set_traffic({second.id: 100})
        answered = {endpoint.predict([PROBE])["deployedModelId"] for _ in range(5)}
        assert answered == {second.id}

    def test_predict_unknown_series_is_refused(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """An unknown series is a PredictionError with status 400 and a reason for it."""
        endpoint.deploy(version_for(1), 0)
        with pytest.raises(PredictionError) as caught:
            endpoint.predict([PROBE, {**PROBE, "store_id": "S99"}])
        assert caught.value.status == 400
        assert any("S99" in reason for reason in caught.value.reasons)

    def test_predict_with_nothing_deployed(self, endpoint: Endpoint) -> None:
        """Predicting on an empty endpoint is a PredictionError, not a hang."""
        with pytest.raises(PredictionError):
            endpoint.predict([PROBE])

    def test_health_of_a_serving_model(self, endpoint: Endpoint, version_for: VersionFor) -> None:
        """A deployed, serving model is healthy."""
        first = endpoint.deploy(version_for(1), 0)
        health = endpoint.health(first.id, PROBE)
        assert health.ok, health.reason

    def test_health_of_an_unknown_model(self, endpoint: Endpoint) -> None:
        """A model that is not deployed is not healthy, and the reason says so."""
        health = endpoint.health("no-such-model", PROBE)
        assert not health.ok
        assert "no-such-model" in health.reason

    def test_broken_deployment_leaves_the_endpoint_as_it_was(
        self, endpoint: Endpoint, version_for: VersionFor, broken_version: ModelVersion
    ) -> None:
        """A version that never serves raises DeployError; models and split are unchanged."""
        first = endpoint.deploy(version_for(1), 0)
        with pytest.raises(DeployError):
            endpoint.deploy(broken_version, 0)
        assert [d.id for d in endpoint.deployed()] == [first.id]
        assert endpoint.traffic() == {first.id: 100}

    def test_started_deployment_ends_with_the_deployed_model(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """start_deploy names an operation that ends done with a model listed at its share."""
        first = endpoint.deploy(version_for(1), 0)
        name = endpoint.start_deploy(version_for(2), 10)
        done = finish(endpoint, name)
        assert (done.name, done.error) == (name, None)
        (new,) = [d for d in endpoint.deployed() if d.id == done.deployed_model_id]
        assert new.version_id == version_for(2).version_id
        assert endpoint.traffic() == {first.id: 90, new.id: 10}
        assert endpoint.operation(name) == done  # a done operation keeps its outcome

    def test_failed_deployment_ends_with_an_error(
        self, endpoint: Endpoint, version_for: VersionFor, broken_version: ModelVersion
    ) -> None:
        """A deployment that never serves ends done with an error; the endpoint is unchanged."""
        first = endpoint.deploy(version_for(1), 0)
        name = endpoint.start_deploy(broken_version, 10)
        failed = finish(endpoint, name)
        assert failed.error and failed.deployed_model_id is None
        assert [d.id for d in endpoint.deployed()] == [first.id]
        assert endpoint.traffic() == {first.id: 100}
        assert endpoint.operation(name) == failed

    def test_start_deploy_refuses_before_starting(
        self, endpoint: Endpoint, version_for: VersionFor
    ) -> None:
        """A first deployment asking for 1-99 % is a ValueError at once; nothing is deployed."""
        with pytest.raises(ValueError):
            endpoint.start_deploy(version_for(1), 50)
        assert (endpoint.deployed(), endpoint.traffic()) == ([], {})

    def test_unknown_operation(self, endpoint: Endpoint) -> None:
        """An operation name the endpoint never gave is a KeyError."""
        for name in ("deploy-999", "projects/p/locations/l/endpoints/e/operations/1"):
            with pytest.raises(KeyError):
                endpoint.operation(name)
