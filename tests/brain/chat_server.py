"""A scripted OpenAI-compatible chat-completions server for tests (run as a process).

Usage: python chat_server.py REPLIES.json LOG.jsonl [--no-json-schema]
Binds a free loopback port, prints it on the first line of stdout, then answers each
POST /v1/chat/completions with the next reply from REPLIES.json (the last one repeats) and
appends every request body to LOG.jsonl. With --no-json-schema it answers a request asking for
`response_format: json_schema` with 400, as servers without schema support do. It exits after
60 s or on SIGTERM.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    replies = json.loads(Path(sys.argv[1]).read_text())
    log_path = sys.argv[2]
    no_schema = "--no-json-schema" in sys.argv[3:]
    count = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            body["_auth"] = self.headers.get("Authorization", "")
            with open(log_path, "a") as f:
                f.write(json.dumps(body) + "\n")
            if not self.path.endswith("/chat/completions"):
                self.send_response(404)
                self.end_headers()
                return
            if no_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                err = json.dumps({"error": {"message": "response_format json_schema is not supported",
                                            "type": "invalid_request_error"}}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(err)))
                self.end_headers()
                self.wfile.write(err)
                return
            content = replies[min(count["n"], len(replies) - 1)]
            count["n"] += 1
            out = json.dumps({
                "id": f"chatcmpl-{count['n']}", "object": "chat.completion", "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Timer(60.0, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
