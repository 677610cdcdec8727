"""One error family: every error salesmesh raises on purpose derives from MeshError."""


class MeshError(Exception):
    """Base for every error salesmesh raises on purpose."""


class InvalidDatasetError(MeshError):
    """An uploaded sales file breaks the data contract; the message says where and how."""


class SourceError(MeshError):
    """A data or artifact location cannot be read: missing file, bucket or object, bad URI."""


class ArtifactIntegrityError(MeshError):
    """A model artifact is incomplete or does not match its manifest; nothing was loaded."""


class ForecastError(MeshError):
    """A forecaster was asked for something it cannot do (too little history, bad horizon)."""
