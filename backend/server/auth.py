"""HTTP Basic auth on every route when BASIC_AUTH_USER and BASIC_AUTH_PASS are set."""

import base64
import binascii
import hmac

from flask import Flask, jsonify, request


def _credentials_match(header: str, expected: bytes) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        supplied = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(supplied, expected)


def basic_auth_header(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def install_basic_auth(app: Flask, user: str, password: str) -> None:
    expected = f"{user}:{password}".encode()

    @app.before_request
    def require_basic_auth():
        if _credentials_match(request.headers.get("Authorization", ""), expected):
            return None
        response = jsonify({"status": "error", "message": "authentication required: send HTTP Basic "
                            "credentials matching BASIC_AUTH_USER and BASIC_AUTH_PASS"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="mraru-backend"'
        return response
