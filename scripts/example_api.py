#!/usr/bin/env python3
"""A stand-in for a dataset's API on this machine, for scripts/run-examples.sh.

Listens on 127.0.0.1 (a free port, printed on the first line of stdout), answers every POST
with 200, and appends one JSON line per request to the file given as the first argument:
the idempotency key, the batch position and the number of records. Standard library only.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]


class Api(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = json.loads(body)
        records = data if isinstance(data, list) else data.get("records", [])
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "batch": self.headers.get("X-Sluice-Batch"),
                "dataset": self.headers.get("X-Sluice-Dataset"),
                "authorized": self.headers.get("Authorization", "").startswith("Bearer "),
                "records": len(records),
            }) + "\n")
        answer = json.dumps({"accepted": len(records)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
print(server.server_address[1], flush=True)
server.serve_forever()
