"""The HTTP server: FastAPI routes over the service layer."""

from annostream.server.app import create_app

__all__ = ["create_app"]
