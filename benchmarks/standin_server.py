#!/usr/bin/env python3
"""A stand-in for jupyterhub-singleuser in benchmarks: answers 200 at once.

Port and address from --ip/--port (condorspawner's launcher), else from
$JUPYTERHUB_SERVICE_URL (how batchspawner-singleuser passes them).
"""

import argparse
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    service = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    parser = argparse.ArgumentParser()
    parser.add_argument("--ip", default=service.hostname or "127.0.0.1")
    parser.add_argument("--port", type=int, default=service.port)
    args, _ = parser.parse_known_args()
    ThreadingHTTPServer((args.ip, args.port), Answer).serve_forever()
