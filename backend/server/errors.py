"""Typed API errors and the handlers that turn every failure into a JSON response."""

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client can fix; `message` names the value and the fix."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        body = {"status": "error", "message": error.message}
        if error.field:
            body["field"] = error.field
        return jsonify(body), error.status

    @app.errorhandler(RequestEntityTooLarge)
    def handle_too_large(error: RequestEntityTooLarge):
        limit_mb = (app.config.get("MAX_CONTENT_LENGTH") or 0) / (1024 * 1024)
        message = (f"request body is over the {limit_mb:g} MB limit; send fewer tasks per request "
                   "or raise MRARU_MAX_REQUEST_MB")
        return jsonify({"status": "error", "message": message}), 413

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        return jsonify({"status": "error", "message": error.description}), error.code

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        logger.exception("Exception on %s [%s]", request.path, request.method)
        return jsonify({"status": "error", "message": "internal error; see the backend log"}), 500
