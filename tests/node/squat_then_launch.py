"""Test helper: the first time it runs, another process takes PORT (a foreign HTTP server
answering 200 to everything) before the real launcher binds it; then it execs the launcher.

    python squat_then_launch.py PORT MARKER -- text-generation-launcher ARGS...

MARKER records the squatter's pid (and makes later runs launch straight away)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

SQUATTER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def main() -> None:
    port, marker = sys.argv[1], sys.argv[2]
    launcher = sys.argv[sys.argv.index("--") + 1:]
    if not os.path.exists(marker):
        # Detached through a shell that exits at once: the squatter is not the launcher's
        # descendant (this process becomes the launcher), as an unrelated process would not be.
        out = subprocess.run(["sh", "-c", 'setsid "$0" -c "$1" "$2" >/dev/null 2>&1 & echo $!',
                              sys.executable, SQUATTER, port], capture_output=True, text=True, check=True)
        with open(marker, "w") as fh:
            fh.write(out.stdout.strip())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the squatter listens
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
    os.execvp(launcher[0], launcher)


if __name__ == "__main__":
    main()
