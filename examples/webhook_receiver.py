#!/usr/bin/env python3
"""A minimal receiver for gatekeeper's signed webhooks: verifies, deduplicates, prints.

    GATE_SECRET=whsec_... python examples/webhook_receiver.py --port 8099

and in config.yaml:

    hooks:
      - type: webhook
        url: http://127.0.0.1:8099/gate
        secret_env: GATE_SECRET
        require_signature: true

Verification follows the Standard Webhooks scheme gatekeeper signs with: the HMAC-SHA256 of
``"<webhook-id>.<webhook-timestamp>.<body>"`` keyed by the base64 part of the secret, compared in
constant time; timestamps older than 5 minutes are refused (replays), and a ``webhook-id`` seen
before is acknowledged but not acted on again (gatekeeper delivers at least once).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
    if not ts.isdigit() or abs(time.time() - int(ts)) > TOLERANCE_S:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, o) for o in offered)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8099)
    args = ap.parse_args()
    secret = os.environ["GATE_SECRET"]
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not verify(secret, headers, body):
                self.send_response(401)
                self.end_headers()
                return
            msg_id = headers["webhook-id"]
            if msg_id not in seen:
                seen.add(msg_id)
                event = json.loads(body)
                print(event["type"], json.dumps(event["data"]), flush=True)
                # Act here: e.g. log the entry, count riders, open a second barrier.
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
