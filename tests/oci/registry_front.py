#!/usr/bin/env python3
"""A front of a registry for the tests: bearer-token authentication, and
a registry that lies.

Usage: registry_front.py UPSTREAM_PORT [--auth USER:PASSWORD] [--cut-manifests]
                         [--latency SECONDS --bandwidth BYTES_PER_SECOND]

Listens on 127.0.0.1 (a free port, printed as "listening on PORT"). With
--auth, every /v2/ request without "Authorization: Bearer <the token>" gets
401 and a WWW-Authenticate Bearer challenge naming this server's /token
realm; /token hands out the token to a request with the right Basic
credentials (401 otherwise). Requests go to the registry on UPSTREAM_PORT
as they are, and its answer comes back as it is, except that with
--cut-manifests a manifest's body is cut to half (its headers, the digest
among them, as the registry sent them). With --latency and --bandwidth (for
bench/containerd.sh) every answer waits the latency, then its body's bytes
at that bandwidth on one link shared by all requests, as ferry's fault+
store emulates a link (chunkstore/fault_store.h).
"""
import base64
import http.client
import http.server
import sys
import threading
import time

UPSTREAM = int(sys.argv[1])
USER = PASSWORD = None
CUT = "--cut-manifests" in sys.argv
if "--auth" in sys.argv:
    USER, PASSWORD = sys.argv[sys.argv.index("--auth") + 1].split(":", 1)
TOKEN = "ferry-test-token"
LATENCY = float(sys.argv[sys.argv.index("--latency") + 1]) if "--latency" in sys.argv else 0.0
BANDWIDTH = float(sys.argv[sys.argv.index("--bandwidth") + 1]) if "--bandwidth" in sys.argv else 0.0
LINK = threading.Lock()
LINK_FREE = [0.0]  # when the shared link is next free (time.monotonic())


def emulate_link(nbytes):
    """Waits as a response of nbytes would on the emulated link."""
    if LATENCY <= 0 and BANDWIDTH <= 0:
        return
    with LINK:
        start = max(time.monotonic() + LATENCY, LINK_FREE[0])
        done = start + (nbytes / BANDWIDTH if BANDWIDTH > 0 else 0)
        LINK_FREE[0] = done
    time.sleep(max(0.0, done - time.monotonic()))


class Front(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, headers=(), body=b"", length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/token"):
            want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self.reply(401, [("WWW-Authenticate", 'Basic realm="token"')])
            return self.reply(200, [("Content-Type", "application/json")],
                              ('{"token": "%s"}' % TOKEN).encode())
        if USER is not None and self.headers.get("Authorization") != "Bearer " + TOKEN:
            port = self.server.server_address[1]
            challenge = ('Bearer realm="http://127.0.0.1:%d/token",service="ferry-test",'
                         'scope="repository:test/img:pull"' % port)
            return self.reply(401, [("WWW-Authenticate", challenge)], b'{"errors":[]}')
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
        conn.request(self.command, self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if CUT and "/manifests/" in self.path:
            body = body[: len(body) // 2]
        emulate_link(len(body))
        # A HEAD answer has no body but says the length of the GET's.
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None
        self.reply(resp.status, [(k, v) for k, v in resp.getheaders()
                                 if k.lower() not in ("content-length", "transfer-encoding", "connection")],
                   body, length)

    do_HEAD = do_GET


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
print("listening on %d" % server.server_address[1], flush=True)
server.serve_forever()
