#!/usr/bin/env python3
"""A stand-in for jupyterhub-singleuser in benchmarks: answers 200 at once.

A Unix socket from --sock (condorspawner's launcher), else the address from
--ip/--port or $JUPYTERHUB_SERVICE_URL (how batchspawner-singleuser passes it).
"""

import argparse
import os
import socketserver
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


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # a Unix peer has no address; the handler wants one
        request, _ = super().get_request()
        return request, ("unix", 0)


if __name__ == "__main__":
    service = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    parser = argparse.ArgumentParser()
    parser.add_argument("--ip", default=service.hostname or "127.0.0.1")
    parser.add_argument("--port", type=int, default=service.port)
    parser.add_argument("--sock")
    args, _ = parser.parse_known_args()
    if args.sock:
        UnixServer(args.sock, Answer).serve_forever()
    else:
        ThreadingHTTPServer((args.ip, args.port), Answer).serve_forever()
