"""The local mesh runner: Cloud Storage emulator with finalize events, Eventarc-like delivery,
functions-framework servers. See :class:`salesmesh.local.mesh.Mesh`."""
