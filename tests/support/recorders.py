"""A throwaway HTTP server on 127.0.0.1 that records the paths requested from it."""

import http.server
import threading


class HitRecorder(http.server.ThreadingHTTPServer):
    """Serve `body` for any GET, HEAD or POST and record each request path in `hits`.

    Tests point task data at `url` and then check that the backend never requested it.
    """

    daemon_threads = True

    def __init__(self, body: bytes = b"good film"):
        self.hits = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                recorder.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_HEAD = do_GET

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()
