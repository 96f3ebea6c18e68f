"""A local App Engine Admin API v1 whose versions really serve, with Cloud Monitoring's response counts
of what they served (see server.py); run it with `python -m sandbox.appengine --port 8090`."""

from sandbox.appengine.control import AppEngineApiError, AppEngineControl
from sandbox.appengine.server import AppEngineSandbox

__all__ = ["AppEngineApiError", "AppEngineControl", "AppEngineSandbox"]
