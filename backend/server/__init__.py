"""Flask application factory for the ML backend."""

import logging

from flask import Flask

from ..config import Settings
from ..services import Services
from .auth import install_basic_auth
from .errors import register_error_handlers
from .routes import api

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the app; `settings` default to the environment, so tests can inject their own."""
    if services is None:
        services = Services(settings or Settings.from_env())
    settings = services.settings
    services.warm_up()
    app = Flask(__name__)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["mraru"] = services
    if settings.basic_auth_user:
        install_basic_auth(app, settings.basic_auth_user, settings.basic_auth_pass)
    register_error_handlers(app)
    app.register_blueprint(api)
    return app
