"""Minimal HTTP app: /health and /count (requests served since start)."""
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT = 0


class H(BaseHTTPRequestHandler):
    def do_GET(self):
        global COUNT
        COUNT += 1
        body = json.dumps({"ok": True, "count": COUNT}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


print("app.start", flush=True)
ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
