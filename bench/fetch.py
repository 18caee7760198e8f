"""Fetch throughput: ironforge's downloader against `curl -o`, and a cached re-fetch.

Serves a 200 MB file from 127.0.0.1 (a separate process using sendfile, so the server is not the
bottleneck and does not share our GIL), then times, alternating and taking the median of a few
runs:  curl -o FILE  vs  fetch_url() into an empty store (streamed, hashed, fsynced, renamed),
and fetch_url() again on the filled store.

Goals: fetch/curl within 1.25x; cached/first under 2%.

    python bench/fetch.py [--size-mb 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.cache.store import Store  # noqa: E402
from builder.fetch.http import fetch_url  # noqa: E402

SERVER = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PATH = sys.argv[1]
SIZE = os.path.getsize(PATH)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.send_header("ETag", '"bench"')
        self.end_headers()
        with open(PATH, "rb") as f:
            self.connection.sendfile(f)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            # vary each MiB so nothing compresses or dedups
            b = i.to_bytes(8, "little") + block[8:]
            h.update(b)
            f.write(b)
    return h.hexdigest()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    curl = shutil.which("curl")
    if not curl:
        print("curl is missing: apt-get install curl", file=sys.stderr)
        return 3
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-bench-fetch-"))
    srv = None
    try:
        src = tmp / "payload.bin"
        digest = make_file(src, args.size_mb << 20)
        srv = subprocess.Popen([sys.executable, "-c", SERVER, str(src)], stdout=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{srv.stdout.readline().strip()}/payload.bin"

        def run_curl():
            subprocess.run([curl, "-s", "-f", "-o", str(tmp / "curl.out"), url], check=True)

        def run_curl_durable():
            # the store fsyncs before its rename (a crash never leaves a trusted half file);
            # curl does not, so this row is the like-for-like comparison
            run_curl()
            fd = os.open(tmp / "curl.out", os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

        stores = []

        def run_fetch():
            store = Store(tmp / f"store{len(stores)}")
            stores.append(store)
            fetch_url(store, url, sha256=digest)

        run_curl()                       # warm the page cache and the loopback path
        curl_t, curl_sync_t, fetch_t = [], [], []
        for _ in range(args.runs):
            curl_t.append(timed(run_curl))
            (tmp / "curl.out").unlink()
            curl_sync_t.append(timed(run_curl_durable))
            (tmp / "curl.out").unlink()
            fetch_t.append(timed(run_fetch))
            shutil.rmtree(stores[-1].root / "downloads" / "sha256")
        warm = Store(tmp / "warm")
        first = timed(lambda: fetch_url(warm, url, sha256=digest))
        cached = statistics.median(timed(lambda: fetch_url(warm, url, sha256=digest))
                                   for _ in range(max(args.runs, 5)))
        c, f = statistics.median(curl_t), statistics.median(fetch_t)
        cs = statistics.median(curl_sync_t)
        mb = args.size_mb
        rows = [("curl -o", c, f"{mb / c:8.0f} MB/s", ""),
                ("curl -o + fsync", cs, f"{mb / cs:8.0f} MB/s", ""),
                ("ironforge fetch", f, f"{mb / f:8.0f} MB/s",
                 f"{f / c:.2f}x curl (goal <= 1.25x); {f / cs:.2f}x curl+fsync"),
                ("cached re-fetch", cached, "", f"{cached / first * 100:.3f}% of first (goal < 2%)")]
        print(f"fetch bench: {mb} MB from 127.0.0.1, median of {args.runs} runs "
              f"(fetch = stream + sha256 + fsync + rename)")
        print(f"{'what':<18}{'seconds':>10}  {'rate':<14}{'ratio'}")
        for name, secs, rate, ratio in rows:
            print(f"{name:<18}{secs:>10.4f}  {rate:<14}{ratio}")
        return 0
    finally:
        if srv is not None:
            srv.terminate()
            srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
