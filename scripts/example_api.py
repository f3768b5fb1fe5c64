#!/usr/bin/env python3
"""A stand-in for a dataset's API on this machine (scripts/run-examples.sh, the local stack).

    example_api.py LOG [--port N] [--require-email]

Listens on 127.0.0.1 (port N, or a free one; the port is printed on the first line of stdout),
and appends one JSON line per request to LOG: the idempotency key, the batch position, the
dataset and the number of records. Answers 200, except with --require-email: a batch with a
record whose `customer.email` is missing or empty gets 422 and
`{"error": "record N: customer.email is required"}`, as a strict API would. Standard library
only.
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("log")
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--require-email", action="store_true")
ARGS = parser.parse_args()


def missing_email(records):
    for n, record in enumerate(records, 1):
        customer = record.get("customer") if isinstance(record, dict) else None
        if not isinstance(customer, dict) or not customer.get("email"):
            return n
    return None


class Api(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = json.loads(body)
        records = data if isinstance(data, list) else data.get("records", [])
        refused = ARGS.require_email and self.headers.get("X-Sluice-Dataset") == "orders" \
            and missing_email(records)
        with open(ARGS.log, "a", encoding="utf-8") as log:
            log.write(json.dumps({
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "batch": self.headers.get("X-Sluice-Batch"),
                "dataset": self.headers.get("X-Sluice-Dataset"),
                "authorized": self.headers.get("Authorization", "").startswith("Bearer "),
                "records": len(records),
                "status": 422 if refused else 200,
            }) + "\n")
        if refused:
            status = 422
            answer = {"error": f"record {refused}: customer.email is required"}
        else:
            status = 200
            answer = {"accepted": len(records)}
        answer = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Api)
print(server.server_address[1], flush=True)
server.serve_forever()
