"""An OpenAI-compatible test server over real HTTP, standard library only.

Run it as ``python tests/support/fake_openai.py --port P [--mode MODE ...]`` (``--port 0`` picks a
free port; the first stdout line is ``PORT <n>``), or from tests with `start_fake_openai`.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, plus
``POST /_control`` (JSON body: behaviour keys to change, counters for ``fail_first`` restart),
``GET /_stats`` (request counts, in-flight maximum) and ``GET /_requests`` (recent bodies).

Where the right answer comes from: the task text carries a gold marker, ``[gold:positive]`` or
``[gold:a,b]`` for several labels. The marker nearest the end of the prompt wins, so markers in
few-shot examples (which come first) are ignored. With no marker the answer is ``no-gold``.

Behaviour keys (all optional):
  mode         correct | wrong | out_of_set | multiline | bad_json_answer | bad_body |
               status | close | hang                       (default correct)
  status       HTTP status for mode=status (default 503)
  retry_after  seconds for a Retry-After header on mode=status (default: none)
  fail_first   apply `mode` to the first N generation requests, then answer correctly
               (0 = always apply it)
  delay        seconds to wait before every generation answer
  hang_s       how long mode=hang keeps the connection open without answering (default 30)
  api_key      when set, requests without ``Authorization: Bearer <api_key>`` get 401
  models       when set, a list of served model names; others get 404 model_not_found
  reject       request keys refused with `reject_status` (e.g. ["grammar"], or "json_schema" to
               refuse response_format of type json_schema as llama-cpp-python does)
  reject_status  the status for `reject` (default 400; llama-cpp-python 0.3 sends 500)
  answer       a fixed raw answer to send instead of the gold label
"""

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

DEFAULTS = {
    "mode": "correct",
    "status": 503,
    "retry_after": None,
    "fail_first": 0,
    "delay": 0.0,
    "hang_s": 30.0,
    "api_key": None,
    "models": None,
    "reject": [],
    "reject_status": 400,
    "answer": None,
}
GOLD = re.compile(r"\[gold:([^\]]*)\]")
WRONG_FALLBACK = "not-the-gold-label"


class State:
    """Behaviour and counters shared by the handler threads."""

    def __init__(self, behaviour: dict) -> None:
        self.lock = threading.Lock()
        self.behaviour = dict(DEFAULTS)
        self.behaviour.update(behaviour)
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.generations = 0
        self.by_path = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies = []
        self.since_control = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State = None

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self._count()
        if self.path == "/_stats":
            with self.state.lock:
                stats = {
                    "requests": self.state.requests,
                    "generations": self.state.generations,
                    "by_path": dict(self.state.by_path),
                    "in_flight": self.state.in_flight,
                    "max_in_flight": self.state.max_in_flight,
                    "behaviour": dict(self.state.behaviour),
                }
            return self._json(200, stats)
        if self.path == "/_requests":
            with self.state.lock:
                return self._json(200, list(self.state.bodies))
        if self.path in ("/v1/models", "/models"):
            names = self.state.behaviour["models"] or ["fake-model"]
            return self._json(200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]})
        return self._json(404, _error("not found", "invalid_request_error"))

    def do_POST(self):
        self._count()
        body = self._read_body()
        if self.path == "/_control":
            with self.state.lock:
                if body.pop("reset_stats", False):
                    self.state.reset()
                self.state.behaviour.update(body)
                self.state.since_control = 0
            return self._json(200, {"behaviour": self.state.behaviour})
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self._json(404, _error(f"no route {self.path}", "invalid_request_error"))
        with self.state.lock:
            self.state.generations += 1
            self.state.since_control += 1
            nth = self.state.since_control
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
            self.state.bodies = (self.state.bodies + [body])[-200:]
            behaviour = dict(self.state.behaviour)
        try:
            self._generate(body, behaviour, nth)
        finally:
            with self.state.lock:
                self.state.in_flight -= 1

    def _generate(self, body: dict, behaviour: dict, nth: int) -> None:
        if behaviour["delay"]:
            time.sleep(float(behaviour["delay"]))
        refusal = self._refusal(body, behaviour)
        if refusal:
            return self._json(*refusal)
        mode = behaviour["mode"]
        if behaviour["fail_first"] and nth > behaviour["fail_first"]:
            mode = "correct"
        if mode == "status":
            headers = {}
            if behaviour["retry_after"] is not None:
                headers["Retry-After"] = str(behaviour["retry_after"])
            return self._json(int(behaviour["status"]), _error("injected failure", "server_error"), headers)
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if mode == "hang":
            time.sleep(float(behaviour["hang_s"]))
            self.close_connection = True
            return None
        if mode == "bad_body":
            return self._raw(200, b'{"id": "x", "choices": [ this is not json', "application/json")
        answer = behaviour["answer"] if behaviour["answer"] is not None else _answer(body, mode)
        self._json(200, _completion(body, answer))

    def _refusal(self, body: dict, behaviour: dict):
        key = behaviour["api_key"]
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            return 401, _error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        models = behaviour["models"]
        if models and body.get("model") not in models:
            message = f"The model `{body.get('model')}` does not exist"
            return 404, _error(message, "invalid_request_error", "model_not_found")
        for name in behaviour["reject"]:
            response_format = body.get("response_format") or {}
            if name in body or (name == "json_schema" and response_format.get("type") == "json_schema"):
                message = f"Unrecognized request argument supplied: {name}"
                return int(behaviour["reject_status"]), _error(message, "invalid_request_error")
        return None

    def _count(self) -> None:
        with self.state.lock:
            self.state.requests += 1
            path = self.path.split("?")[0]
            self.state.by_path[path] = self.state.by_path.get(path, 0) + 1

    def _read_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        try:
            return json.loads(data or b"{}")
        except json.JSONDecodeError:
            return {"_unparsed": data.decode("utf-8", "replace")}

    def _json(self, status: int, payload, headers=None) -> None:
        self._raw(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _raw(self, status: int, data: bytes, content_type: str, headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, kind: str, code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _prompt_text(body: dict) -> str:
    if "messages" in body:
        return "\n".join(str(m.get("content", "")) for m in body["messages"])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else "\n".join(map(str, prompt))


def _label_set(body: dict) -> list[str]:
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    for prop in (schema.get("properties") or {}).values():
        enum = prop.get("enum") or (prop.get("items") or {}).get("enum")
        if enum:
            return list(enum)
    if body.get("guided_choice"):
        return [c.strip() for c in body["guided_choice"] if "," not in c]
    return []


def _answer(body: dict, mode: str) -> str:
    golds = GOLD.findall(_prompt_text(body))
    labels = [g.strip() for g in golds[-1].split(",")] if golds else ["no-gold"]
    if mode == "wrong":
        others = [c for c in _label_set(body) if c not in labels]
        labels = [others[0] if others else WRONG_FALLBACK]
    elif mode == "out_of_set":
        labels = ["definitely-not-a-label"]
    if mode == "multiline":
        return f"{labels[0]}\nBecause the text says so."
    if mode == "bad_json_answer":
        return '{"label": "' + labels[0]
    response_format = body.get("response_format") or {}
    if "messages" in body and response_format.get("type") in ("json_schema", "json_object"):
        schema = (response_format.get("json_schema") or {}).get("schema") or response_format.get("schema") or {}
        if "labels" in (schema.get("properties") or {}):
            return json.dumps({"labels": labels})
        return json.dumps({"label": labels[0]})
    return " " + ", ".join(labels)


def _completion(body: dict, answer: str) -> dict:
    prompt_tokens = max(1, len(_prompt_text(body)) // 4)
    completion_tokens = max(1, len(answer) // 4)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    common = {"id": "fake-1", "created": int(time.time()), "model": body.get("model", "fake-model"), "usage": usage}
    if "messages" in body:
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
        return {**common, "object": "chat.completion", "choices": [choice]}
    choice = {"index": 0, "finish_reason": "stop", "text": answer, "logprobs": None}
    return {**common, "object": "text_completion", "choices": [choice]}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # dropped connections are part of the tests
        pass


class FakeOpenAI:
    """Handle on a fake server running in a subprocess."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/v1"

    def control(self, **behaviour) -> dict:
        """Change behaviour keys; ``reset_stats=True`` also zeroes the counters."""
        return self._call("/_control", behaviour)

    def stats(self) -> dict:
        return self._call("/_stats")

    def requests(self) -> list:
        return self._call("/_requests")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> "FakeOpenAI":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _call(self, path: str, payload=None):
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = Request(self.root + path, data=data, headers={"Content-Type": "application/json"})
        with urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def start_fake_openai(port: int | None = None, **behaviour) -> FakeOpenAI:
    """Start the fake server in a subprocess on 127.0.0.1 and wait until ``GET /_stats`` returns.

    Parameters
    ----------
    port : int, optional
        The port to bind; by default the server binds port 0 and reports the one it got.
    **behaviour
        Initial behaviour keys (see the module docstring).
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--port", str(port or 0),
               "--behaviour", json.dumps(behaviour)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"fake OpenAI server did not start (first line {line!r}, exit {process.poll()})")
    server = FakeOpenAI(process, int(line.split()[1]))
    deadline = time.monotonic() + 10
    while True:
        try:
            server.stats()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.05)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fake server for tests")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--behaviour", default="{}", help="JSON object of behaviour keys")
    for key in ("mode", "status", "retry_after", "fail_first", "delay"):
        parser.add_argument("--" + key.replace("_", "-"), dest=key, default=None)
    args = parser.parse_args(argv)
    behaviour = json.loads(args.behaviour)
    for key, kind in (("mode", str), ("status", int), ("retry_after", str), ("fail_first", int), ("delay", float)):
        if getattr(args, key) is not None:
            behaviour[key] = kind(getattr(args, key))
    Handler.state = State(behaviour)
    server = QuietServer(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
