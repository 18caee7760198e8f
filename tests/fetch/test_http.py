"""The download engine against a real loopback HTTP server that misbehaves on request."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.errors import ChecksumError, FetchError, UsageError
from builder.fetch.http import FetchOptions, HttpStatusError, fetch_unpinned, fetch_url

from fetch_support import Route, assert_store_sane, partials, stored


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(n: int = 300_000) -> bytes:
    return os.urandom(n)


def test_plain_download_lands_under_its_sha256(server, store, fast):
    data = blob()
    url = server.add(server.unique("a.bin"), Route(data=data))
    path = fetch_url(store, url, sha256=sha(data), options=fast)
    assert path == store.download_path(sha(data))
    assert path.read_bytes() == data
    assert partials(store) == []
    assert_store_sane(store)


def test_cached_file_is_used_without_the_network(server, store, fast):
    data = blob(1000)
    route = Route(data=data)
    url = server.add(server.unique("c.bin"), route)
    first = fetch_url(store, url, sha256=sha(data), options=fast)
    assert fetch_url(store, url, sha256=sha(data), options=fast) == first
    assert fetch_url(store, url, sha256=sha(data), offline=True) == first
    assert len(route.requests) == 1


def test_offline_miss_names_the_url(store):
    url = "http://127.0.0.1:9/never-fetched.iso"
    with pytest.raises(FetchError) as ei:
        fetch_url(store, url, sha256="0" * 64, offline=True)
    assert url in ei.value.message and url in ei.value.hint
    assert stored(store) == []


def test_resume_after_cut_sends_range_and_if_range(server, store, fast):
    data = blob(400_000)
    route = Route(data=data, cut_after=150_000, cut_times=1)
    url = server.add(server.unique("cut.bin"), route)
    path = fetch_url(store, url, sha256=sha(data), options=fast)
    assert path.read_bytes() == data
    assert len(route.requests) == 2
    assert route.requests[1]["Range"] == "bytes=150000-"
    assert route.requests[1]["If-Range"] == '"v1"'
    assert partials(store) == []
    assert_store_sane(store)


def test_cut_every_time_keeps_a_resumable_prefix_and_next_run_resumes(server, store, fast):
    data = blob(400_000)
    route = Route(data=data, cut_after=100_000, cut_times=1)
    url = server.add(server.unique("cut2.bin"), route)
    with pytest.raises(FetchError) as ei:
        fetch_url(store, url, sha256=sha(data), options=FetchOptions(retries=0, read_timeout=2))
    assert "connection closed after 100000 of 400000 bytes" in ei.value.message
    assert "resumes" in ei.value.hint
    [part] = partials(store)
    assert part.read_bytes() == data[:100_000]
    assert stored(store) == []
    assert_store_sane(store, data)
    # a later run continues from the partial instead of starting over
    path = fetch_url(store, url, sha256=sha(data), options=fast)
    assert path.read_bytes() == data
    assert route.requests[-1]["Range"] == "bytes=100000-"
    assert partials(store) == []


def test_changed_file_behind_a_partial_is_downloaded_whole(server, store, fast):
    old, new = blob(200_000), blob(200_000)
    path_ = server.unique("changing.bin")
    url = server.add(path_, Route(data=old, cut_after=50_000, cut_times=1))
    with pytest.raises(FetchError):
        fetch_url(store, url, sha256=sha(new), options=FetchOptions(retries=0, read_timeout=2))
    # the server now has another version: If-Range does not match, so it sends all of it
    route = Route(data=new, etag='"v2"')
    server.add(path_, route)
    assert fetch_url(store, url, sha256=sha(new), options=fast).read_bytes() == new
    assert route.requests[0]["If-Range"] == '"v1"'
    assert_store_sane(store)
    assert partials(store) == []


def test_stale_prefix_without_validator_is_redownloaded_once(server, store, fast):
    data = blob(200_000)
    route = Route(data=data, etag=None)
    url = server.add(server.unique("stale.bin"), route)
    # a partial an earlier run left: wrong bytes that no validator can expose
    tmp = store.download_tmpdir()
    (tmp / f"sha256-{sha(data)}.part").write_bytes(b"X" * 1000)
    (tmp / f"sha256-{sha(data)}.part.json").write_text(json.dumps({"url": url, "validator": None}))
    assert fetch_url(store, url, sha256=sha(data), options=fast).read_bytes() == data
    assert [r.get("Range") for r in route.requests] == ["bytes=1000-", None]
    assert_store_sane(store)


def test_500_then_200_is_retried(server, store, fast):
    data = blob(1000)
    route = Route(data=data, fail_first=1)
    url = server.add(server.unique("flaky.bin"), route)
    assert fetch_url(store, url, sha256=sha(data), options=fast).read_bytes() == data
    assert len(route.requests) == 2


def test_persistent_5xx_gives_up_with_status(server, store, fast):
    route = Route(data=b"x", fail_first=99, fail_status=503)
    url = server.add(server.unique("down.bin"), route)
    with pytest.raises(HttpStatusError) as ei:
        fetch_url(store, url, sha256=sha(b"x"), options=fast)
    assert ei.value.status == 503 and url in ei.value.message
    assert len(route.requests) == 1 + fast.retries
    assert stored(store) == [] and partials(store) == []


@pytest.mark.parametrize("status", [404, 403, 410])
def test_4xx_is_not_retried_and_names_url_and_status(server, store, fast, status):
    route = Route(status=status)
    url = server.add(server.unique(f"gone{status}.bin"), route)
    with pytest.raises(HttpStatusError) as ei:
        fetch_url(store, url, sha256="1" * 64, options=fast)
    assert ei.value.status == status
    assert url in ei.value.message and str(status) in ei.value.message
    assert ei.value.hint
    assert len(route.requests) == 1
    assert stored(store) == [] and partials(store) == []


def test_unknown_path_is_404(server, store, fast):
    with pytest.raises(HttpStatusError) as ei:
        fetch_url(store, server.base + "/nothing/here", sha256="1" * 64, options=fast)
    assert ei.value.status == 404


def test_checksum_mismatch_names_both_digests_and_keeps_nothing(server, store, fast):
    good, wrong = blob(5000), blob(5000)
    url = server.add(server.unique("wrong.bin"), Route(data=wrong))
    with pytest.raises(ChecksumError) as ei:
        fetch_url(store, url, sha256=sha(good), options=fast)
    assert ei.value.expected == sha(good) and ei.value.actual == sha(wrong)
    assert sha(good) in ei.value.message and sha(wrong) in ei.value.message
    assert stored(store) == [] and partials(store) == []
    assert_store_sane(store)


def test_sha512_only_source_is_indexed_and_found_again(server, store, fast):
    data = blob(3000)
    s512 = hashlib.sha512(data).hexdigest()
    route = Route(data=data)
    url = server.add(server.unique("s512.bin"), route)
    path = fetch_url(store, url, sha512=s512, options=fast)
    assert path == store.download_path(sha(data))
    idx = json.loads((store.root / "downloads" / "sha512" / s512).read_text())
    assert idx == {"sha256": sha(data), "size": len(data)}
    assert fetch_url(store, url, sha512=s512, offline=True) == path
    assert len(route.requests) == 1


def test_sha512_mismatch(server, store, fast):
    data = blob(3000)
    url = server.add(server.unique("s512bad.bin"), Route(data=data))
    with pytest.raises(ChecksumError) as ei:
        fetch_url(store, url, sha256=sha(data), sha512="a" * 128, options=fast)
    assert "sha512" in ei.value.message
    assert stored(store) == [] and partials(store) == []


def test_digest_is_required_and_checked_for_shape(store):
    with pytest.raises(UsageError):
        fetch_url(store, "http://127.0.0.1/x")
    with pytest.raises(UsageError):
        fetch_url(store, "http://127.0.0.1/x", sha256="abc")


def test_unreachable_host(store, fast):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                       # nothing listens here now: connection refused
    url = f"http://127.0.0.1:{port}/file.iso"
    with pytest.raises(FetchError) as ei:
        fetch_url(store, url, sha256="2" * 64, options=fast)
    assert "cannot reach 127.0.0.1" in ei.value.message and "3 attempts" in ei.value.message
    assert ei.value.hint
    assert stored(store) == [] and partials(store) == []


def test_redirect_loop(server, store, fast):
    a, b = server.unique("loop-a"), server.unique("loop-b")
    server.add(a, Route(redirect=b))
    server.add(b, Route(redirect=a))
    with pytest.raises(FetchError) as ei:
        fetch_url(store, server.base + a, sha256="3" * 64, options=fast)
    assert "redirect" in ei.value.message
    assert stored(store) == [] and partials(store) == []


def test_redirect_is_followed(server, store, fast):
    data = blob(1000)
    target = server.add(server.unique("target.bin"), Route(data=data))
    src = server.add(server.unique("moved.bin"), Route(redirect=target))
    assert fetch_url(store, src, sha256=sha(data), options=fast).read_bytes() == data


def test_content_length_larger_than_body(server, store, fast):
    data = blob(50_000)
    route = Route(data=data, length=80_000)
    url = server.add(server.unique("liar-long.bin"), route)
    with pytest.raises(FetchError) as ei:
        fetch_url(store, url, sha256=sha(data), options=fast)
    assert "fewer bytes than its Content-Length" in ei.value.hint
    assert stored(store) == []
    assert_store_sane(store, data)


def test_content_length_smaller_than_body(server, store, fast):
    data = blob(50_000)
    url = server.add(server.unique("liar-short.bin"), Route(data=data, length=20_000))
    with pytest.raises(ChecksumError) as ei:
        fetch_url(store, url, sha256=sha(data), options=fast)
    assert ei.value.actual == sha(data[:20_000])
    assert stored(store) == [] and partials(store) == []


def test_stalled_transfer_times_out_and_keeps_prefix(server, store):
    data = blob(200_000)
    route = Route(data=data, stall_after=30_000, stall_seconds=1.5)
    url = server.add(server.unique("stall.bin"), route)
    opts = FetchOptions(read_timeout=0.3, retries=0, backoff=0.01)
    with pytest.raises(FetchError) as ei:
        fetch_url(store, url, sha256=sha(data), options=opts)
    assert "stalled" in ei.value.message and "0.3 s" in ei.value.message
    assert "resumes" in ei.value.hint
    assert len(route.requests) == 1
    assert stored(store) == []
    assert_store_sane(store, data)
    [part] = partials(store)
    assert part.read_bytes() == data[:30_000], "what arrived before the stall is kept for resuming"


def test_stall_then_resume_completes(server, store):
    data = blob(200_000)
    route = Route(data=data, stall_after=30_000, stall_seconds=1.5, stall_times=1)
    url = server.add(server.unique("stall-once.bin"), route)
    opts = FetchOptions(read_timeout=0.3, retries=1, backoff=0.01)
    assert fetch_url(store, url, sha256=sha(data), options=opts).read_bytes() == data
    assert [r.get("Range") for r in route.requests] == [None, "bytes=30000-"]
    assert partials(store) == []


def test_progress_resets_the_retry_count(server, store):
    data = blob(200_000)
    # cut after 40 kB on every request: each attempt gets further, so retries=1 still finishes
    route = Route(data=data, cut_after=40_000)
    url = server.add(server.unique("cut-always.bin"), route)
    opts = FetchOptions(read_timeout=2, retries=1, backoff=0.01)
    assert fetch_url(store, url, sha256=sha(data), options=opts).read_bytes() == data
    assert len(route.requests) == 5


def test_two_concurrent_fetches_make_one_good_file(server, store, fast):
    data = blob(2_000_000)
    route = Route(data=data, slow=0.005)
    url = server.add(server.unique("shared.bin"), route)
    results, errors = [], []

    def worker():
        try:
            results.append(fetch_url(store, url, sha256=sha(data), options=fast))
        except Exception as exc:   # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results[0] == results[1] == store.download_path(sha(data))
    assert results[0].read_bytes() == data
    assert len(route.requests) == 1, "the second fetch waited for the first and used its file"
    assert partials(store) == []
    assert_store_sane(store)


def test_two_processes_fetching_one_url_make_one_good_file(server, store, tmp_path):
    data = blob(2_000_000)
    route = Route(data=data, slow=0.02)
    url = server.add(server.unique("shared-procs.bin"), route)
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\n"
            "from builder.cache.store import Store\n"
            "from builder.fetch.http import fetch_url\n"
            "go = pathlib.Path(sys.argv[3])\n"
            "pathlib.Path(sys.argv[5]).touch()\n"
            "while not go.exists(): time.sleep(0.01)\n"
            "print(fetch_url(Store(pathlib.Path(sys.argv[1])), sys.argv[2], sha256=sys.argv[4]))\n")
    root = Path(__file__).resolve().parents[2]
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.root), url, str(go), sha(data),
                               str(r)], cwd=root, stdout=subprocess.PIPE, text=True) for r in ready]
    while not all(r.exists() for r in ready):   # both imported and waiting: release them together
        assert all(p.poll() is None for p in procs), "a fetch process died before starting"
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] == str(store.download_path(sha(data)))
    assert store.download_path(sha(data)).read_bytes() == data
    assert len(route.requests) == 1
    assert partials(store) == []
    assert_store_sane(store)


def test_unpinned_fetch_is_fresh_online_and_cached_offline(server, store, fast):
    p = server.unique("InRelease")
    url = server.add(p, Route(data=b"one"))
    assert fetch_unpinned(store, url, options=fast).read_bytes() == b"one"
    server.add(p, Route(data=b"two"))
    assert fetch_unpinned(store, url, options=fast).read_bytes() == b"two"
    assert fetch_unpinned(store, url, offline=True).read_bytes() == b"two"
    with pytest.raises(FetchError):
        fetch_unpinned(store, server.base + "/never", offline=True)


def test_progress_bar_does_not_change_the_result(server, store, fast, capsys):
    data = blob(200_000)
    url = server.add(server.unique("bar.bin"), Route(data=data))
    assert fetch_url(store, url, sha256=sha(data), options=fast, progress=True).read_bytes() == data
    assert "bar.bin" in capsys.readouterr().err
