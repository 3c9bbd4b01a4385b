#!/usr/bin/env bash
# `make bench-purge`: the purge program's peak memory (maximum resident set,
# GNU time) for one webhook purge of 1,000 URLs to a local receiver, and the
# size of the program (stripped, as the image carries it).
# Usage: scripts/purge-memory.sh PROGRAM
set -euo pipefail
cd "$(dirname "$0")/.."
program="$1"
work="$(mktemp -d)"
trap 'kill "$receiver" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
python3 - "$port" <<'PY' &
import http.server, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
receiver=$!
mkdir -p "$work/secret"
echo "http://127.0.0.1:$port/purge" >"$work/secret/WEBHOOK_URL"
urls=()
for i in $(seq 1 1000); do urls+=("--url=https://www.example.com/page/$i"); done
sleep 1
/usr/bin/time -f '%M' -o "$work/rss" "$program" purge --provider=webhook --secret=bench \
  --credentials="$work/secret" --termination-log="$work/outcome" "${urls[@]}" >/dev/null
strip -o "$work/stripped" "$program"
echo "purge: $(jq -r .result "$work/outcome"), peak memory $(($(cat "$work/rss") / 1024)) MiB ($(cat "$work/rss") KiB); program $(stat -c %s "$work/stripped") bytes stripped"
