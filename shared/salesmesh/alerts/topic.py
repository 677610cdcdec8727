"""The alerts topic, for whoever publishes incidents from outside the mesh's own monitor.

Kept out of :mod:`salesmesh.runtime` on purpose: the functions import the runtime, and their
deploy packages should not carry the Pub/Sub client until a function publishes.
"""

from __future__ import annotations

from salesmesh.ports import Topic
from salesmesh.settings import Settings


def alerts_topic(settings: Settings) -> Topic:
    """The alerts topic: Pub/Sub's on gcp; locally the running mesh's, from any process
    (its ``mesh.json`` says where; MeshError when no mesh runs)."""
    if settings.backend == "local":
        from salesmesh.local.mesh_pubsub import running_topic

        return running_topic(settings, "alerts")
    from salesmesh.backends.gcp_pubsub import PubSubTopic

    return PubSubTopic(settings.project, settings.alerts_topic)
