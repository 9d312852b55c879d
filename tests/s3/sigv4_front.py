#!/usr/bin/env python3
"""A small S3 front for ferry's s3:// store tests, on 127.0.0.1 only.

Every request's AWS SigV4 signature is checked here, independently of the
client: the canonical request is rebuilt from what arrived (path and query
decoded and encoded again, query sorted), so a client that signs anything
else than what it sends is caught. Each request is logged as one line:
    METHOD PATH?QUERY -> STATUS sig=ok|none|bad:WHY conn=CLIENT_PORT
A bad signature is answered 403 SignatureDoesNotMatch.

Requests are then answered by, in this order:
  1. the first line of the fault script (--faults FILE), which is removed:
     "STATUS CODE" (e.g. "503 SlowDown"), "drop" (close without answering)
     or "hang SECONDS" (answer 503 after that long);
  2. the S3 server at 127.0.0.1:--upstream, to which the request is passed;
  3. a tiny in-memory store: PUT, GET (with Range), HEAD, DELETE of objects.

Prints "listening on 127.0.0.1:PORT" when ready; exits by itself after
--lifetime seconds (default 900) so that it never outlives its test.
"""
import argparse
import hashlib
import hmac
import http.client
import http.server
import os
import re
import sys
import threading
import time
import urllib.parse

ARGS = None
LOCK = threading.Lock()
OBJECTS = {}


def uri_encode(raw: bytes, keep_slash: bool) -> str:
    out = []
    for b in raw:
        c = chr(b)
        if (c.isascii() and c.isalnum()) or c in "-._~" or (keep_slash and c == "/"):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def canonical_query(raw: str) -> str:
    pairs = []
    for item in raw.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((uri_encode(urllib.parse.unquote_to_bytes(name), False),
                      uri_encode(urllib.parse.unquote_to_bytes(value), False)))
    return "&".join("%s=%s" % p for p in sorted(pairs))


def hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def check_signature(method, raw_path, headers, body):
    """Returns "ok", "none" or "bad:<reason>"."""
    auth = headers.get("Authorization")
    if auth is None:
        return "none"
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                     r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})", auth.strip())
    if not m:
        return "bad:authorization-syntax"
    key_id, date, region, service, signed, signature = m.groups()
    if key_id != ARGS.key_id:
        return "bad:key-id"
    signed_list = signed.split(";")
    if signed_list != sorted(signed_list):
        return "bad:signed-headers-not-sorted"
    for name in headers.keys():
        low = name.lower()
        if (low.startswith("x-amz-") or low == "host") and low not in signed_list:
            return "bad:unsigned-" + low
    payload = headers.get("x-amz-content-sha256")
    if payload is None:
        return "bad:no-x-amz-content-sha256"
    if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
        return "bad:payload-hash"
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return "bad:x-amz-date"
    path, _, query = raw_path.partition("?")
    canon_headers = "".join(
        "%s:%s\n" % (h, ",".join(" ".join(v.split()) for v in headers.get_all(h, [])))
        for h in signed_list)
    request = "\n".join([method, uri_encode(urllib.parse.unquote_to_bytes(path), True),
                         canonical_query(query), canon_headers, signed, payload])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + ARGS.secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac_sha256(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return "ok" if hmac.compare_digest(expected, signature) else "bad:signature"


def next_fault():
    if not ARGS.faults:
        return None
    with LOCK:
        try:
            with open(ARGS.faults) as f:
                lines = [l.strip() for l in f if l.strip()]
        except FileNotFoundError:
            return None
        if not lines:
            return None
        with open(ARGS.faults, "w") as f:
            f.write("".join(l + "\n" for l in lines[1:]))
        return lines[0]


def error_xml(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '</Error>' % (code, message)).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, status, sig):
        with LOCK:
            with open(ARGS.log, "a") as f:
                f.write("%s %s -> %s sig=%s conn=%d\n" % (self.command, self.path, status, sig,
                                                          self.client_address[1]))

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k in (headers or {})):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        sig = check_signature(self.command, self.path, self.headers, body)
        if sig.startswith("bad"):
            self.record(403, sig)
            return self.reply(403, error_xml("SignatureDoesNotMatch", sig))
        fault = next_fault()
        if fault == "drop":
            self.record("drop", sig)
            self.close_connection = True
            return
        if fault and fault.startswith("hang"):
            self.record("hang", sig)
            time.sleep(float(fault.split()[1]))
            return self.reply(503, error_xml("SlowDown", "hung"))
        if fault:
            status, _, code = fault.partition(" ")
            self.record(status, sig)
            return self.reply(int(status), error_xml(code or "Fault", "scripted fault"))
        if ARGS.upstream:
            return self.forward(body, sig)
        return self.serve_memory(body, sig)

    def forward(self, body, sig):
        conn = http.client.HTTPConnection("127.0.0.1", ARGS.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST")
                     else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out = {k: v for k, v in resp.getheaders()
               if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")}
        if self.command == "HEAD":
            out["Content-Length"] = resp.getheader("Content-Length", "0")
        conn.close()
        self.record(resp.status, sig)
        self.reply(resp.status, data, out)

    def serve_memory(self, body, sig):
        path = self.path.partition("?")[0]
        status, data, headers = 200, b"", {}
        if self.command == "PUT":
            OBJECTS[path] = body
        elif self.command == "DELETE":
            OBJECTS.pop(path, None)
            status = 204
        elif path not in OBJECTS:
            status, data = 404, error_xml("NoSuchKey", "The specified key does not exist.")
        elif self.command == "HEAD":
            headers["Content-Length"] = str(len(OBJECTS[path]))
        else:
            data = OBJECTS[path]
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            if m:
                first, last = int(m.group(1)), int(m.group(2))
                if first >= len(data):
                    status, data = 416, error_xml("InvalidRange", "not satisfiable")
                else:
                    last = min(last, len(data) - 1)
                    headers["Content-Range"] = "bytes %d-%d/%d" % (first, last, len(data))
                    status, data = 206, data[first:last + 1]
        self.record(status, sig)
        self.reply(status, data, headers)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--faults")
    p.add_argument("--upstream", type=int, default=0)
    p.add_argument("--key-id", default="S3RVER")
    p.add_argument("--secret", default="S3RVER")
    p.add_argument("--lifetime", type=float, default=900)
    ARGS = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Timer(ARGS.lifetime, lambda: os._exit(0)).start()
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
