"""The prediction server's parts: settings, the precomputed predictor and its WSGI app.

``python -m salesmesh.serve`` assembles them behind gunicorn; tests use them directly::

    predictor = Predictor.from_folder(folder)        # verified run folder
    app = create_app(predictor, ServeSettings.from_env({"AIP_STORAGE_URI": str(folder)}))
"""

from salesmesh.serving.predictor import MAX_INSTANCES, REQUIRED_FILES, Predictor
from salesmesh.serving.settings import ServeSettings
from salesmesh.serving.wsgi import MAX_BODY_BYTES, create_app

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_INSTANCES",
    "REQUIRED_FILES",
    "Predictor",
    "ServeSettings",
    "create_app",
]
