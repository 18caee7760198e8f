"""The remote stage cache against a real registry (Debian's docker-registry on loopback), with
"machines" that are separate processes with separate local caches (tests/remote_child.py runs
fake stages that write real qcow2 overlays). Faults are injected for real: the registry stopped,
a socket that never answers, a blob corrupted in the registry's storage folder, a pushing
process SIGKILLed before its manifest, two machines pushing one key at once."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from registry_support import pass_store, registry

ROOT = Path(__file__).resolve().parents[3]
CHILD = ROOT / "tests" / "remote_child.py"


def machine(tmp: Path, name: str, stages: str, url: str | None, *extra: str, env: dict | None = None,
            timeout: float = 300) -> tuple[dict, str]:
    cmd = [sys.executable, str(CHILD), str(tmp / name / "cache"), str(tmp / name / "counter"), stages]
    if url:
        cmd += ["--remote", url]
    r = subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout), r.stderr


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def reg(tmp_path):
    with registry(tmp_path / "registry") as server:
        yield server


def test_second_machine_pulls_every_stage_and_runs_none(reg, tmp_path):
    one, _ = machine(tmp_path, "one", "base,layer", reg.url())
    assert one["runs"] == ["base", "layer"]
    keys = [s["key"] for s in one["steps"]]
    assert reg.tags() == sorted(keys)            # each stage's tag is its cache key
    two, err = machine(tmp_path, "two", "base,layer", reg.url())
    assert two["runs"] == []                     # nothing built on the second machine
    assert [(s["key"], s["hit"], s["reason"]) for s in two["steps"]] == [(k, True, "pulled") for k in keys]
    assert warnings(err) == []
    layer = Path(two["files"]["layer"])
    # the overlay now reads through the second machine's own copy of the base stage
    info = json.loads(qemu_img("info", "--output=json", str(layer)).stdout)
    assert info["backing-filename"] == str(Path(two["files"]["base"]))
    assert info["backing-filename-format"] == "qcow2"
    assert qemu_img("compare", str(layer), one["files"]["layer"]).returncode == 0
    # committed like a local build: read-only files, complete meta under the same key
    assert not layer.stat().st_mode & 0o222
    meta = json.loads((layer.parent / "meta.json").read_text())
    assert meta["key"] == keys[1] and meta["complete"] is True and meta["pulled_from"].startswith(reg.url())
    # the manifest: config = meta.json, layer names, subject = the previous stage's manifest
    m = requests.get(f"http://{reg.hostport}/v2/ironforge/stages/manifests/{keys[1]}",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=5)
    doc = m.json()
    assert doc["config"]["mediaType"] == "application/vnd.ironforge.stage.meta.v1+json"
    assert doc["layers"][0]["annotations"]["org.opencontainers.image.title"] == "layer.qcow2"
    assert doc["layers"][0]["annotations"]["org.ironforge.backing.key"] == keys[0]
    base_head = requests.head(f"http://{reg.hostport}/v2/ironforge/stages/manifests/{keys[0]}",
                              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=5)
    assert doc["subject"]["digest"] == base_head.headers["Docker-Content-Digest"]
    # a third run on machine two, read-only: plain local hits, no network needed
    reg.stop()
    again, err = machine(tmp_path, "two", "base,layer", reg.url(), "--readonly")
    assert [s["reason"] for s in again["steps"]] == ["cached", "cached"] and warnings(err) == []


def test_readonly_pulls_and_never_pushes(reg, tmp_path):
    one, _ = machine(tmp_path, "one", "base", reg.url())
    two, _ = machine(tmp_path, "two", "base,layer", reg.url(), "--readonly")
    assert two["runs"] == ["layer"] and two["steps"][0]["reason"] == "pulled"
    assert reg.tags() == [one["steps"][0]["key"]]          # the layer was not pushed


def test_remote_from_the_configuration_file_and_the_flag_wins(reg, tmp_path):
    """A CI runner names its registry once, in its configuration file: machine two has no flag
    and no variable, pulls everything, and (read-only there) pushes nothing. A flag naming
    another registry wins over the file."""
    one, _ = machine(tmp_path, "one", "base", reg.url())
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[cache]\nremote = "{reg.url()}"\nremote_readonly = true\n')
    env = {"IRONFORGE_CONFIG": str(cfg), "IRONFORGE_CACHE_REMOTE": "", "IRONFORGE_CACHE_REMOTE_READONLY": ""}
    two, err = machine(tmp_path, "two", "base,layer", None, env=env)
    assert two["runs"] == ["layer"] and two["steps"][0]["reason"] == "pulled" and warnings(err) == []
    assert reg.tags() == [one["steps"][0]["key"]]          # read-only from the file: not pushed
    with socket.socket() as s:                             # nothing listens here once closed
        s.bind(("127.0.0.1", 0))
        dead = f"oci+http://127.0.0.1:{s.getsockname()[1]}/ironforge/stages"
    three, err = machine(tmp_path, "three", "base", dead, env=env)
    assert three["runs"] == ["base"]                       # the flag's registry, not the file's
    assert len(warnings(err)) == 1 and "127.0.0.1" in warnings(err)[0], err


def test_plan_says_which_misses_the_registry_holds_and_pulls_nothing(reg, tmp_path):
    one, _ = machine(tmp_path, "one", "base", reg.url())
    plan, err = machine(tmp_path, "two", "base,layer", reg.url(), "--plan")
    base, layer = plan["plan"]
    assert (base["key"], base["hit"], base["remote"]) == (one["steps"][0]["key"], False, True)
    assert base["reason"].startswith(f"in the remote cache {reg.url()}: pulled, not built")
    assert (layer["hit"], layer["remote"]) == (False, False) and warnings(err) == []
    assert plan["runs"] == [] and not (tmp_path / "two" / "cache" / "stages" / base["key"]).exists()
    reg.stop()                          # an unusable registry: the plan still comes, with one warning
    plan, err = machine(tmp_path, "two", "base,layer", reg.url(), "--plan")
    assert [s["remote"] for s in plan["plan"]] == [False, False] and len(warnings(err)) == 1


def test_registry_stopped_build_goes_on_with_one_warning(reg, tmp_path):
    reg.stop()
    t0 = time.monotonic()
    out, err = machine(tmp_path, "one", "base,layer", reg.url())
    assert out["runs"] == ["base", "layer"]
    assert len(warnings(err)) == 1 and "building locally" in warnings(err)[0], err
    assert time.monotonic() - t0 < 60


def test_registry_that_never_answers_costs_one_short_timeout(tmp_path):
    with socket.socket() as s:              # accepts connections (backlog), never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        url = f"oci+http://127.0.0.1:{s.getsockname()[1]}/ironforge/stages"
        t0 = time.monotonic()
        out, err = machine(tmp_path, "one", "base,layer", url)
        took = time.monotonic() - t0
    assert out["runs"] == ["base", "layer"]
    assert len(warnings(err)) == 1 and "ReadTimeout" in warnings(err)[0], err
    assert took < 45


def test_corrupt_blob_is_not_used_rebuilt_named_and_replaced(reg, tmp_path):
    one, _ = machine(tmp_path, "one", "base,layer", reg.url())
    layer_key = one["steps"][1]["key"]
    doc = requests.get(f"http://{reg.hostport}/v2/ironforge/stages/manifests/{layer_key}",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=5).json()
    blob = reg.blob_file(doc["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[70000] ^= 0xFF                     # one bit pattern flipped in the data area
    blob.write_bytes(bytes(data))
    two, err = machine(tmp_path, "two", "base,layer", reg.url())
    assert [s["reason"] for s in two["steps"]][0] == "pulled"
    assert two["runs"] == ["layer"]         # not used: built here
    w = warnings(err)
    assert len(w) == 1 and "stage layer" in w[0] and "does not match its digest" in w[0], err
    # the fresh build replaced the bad tag: a third machine pulls a good artifact
    three, err3 = machine(tmp_path, "three", "base,layer", reg.url())
    assert three["runs"] == [] and warnings(err3) == []
    assert qemu_img("compare", three["files"]["layer"], two["files"]["layer"]).returncode == 0


def test_push_killed_before_its_manifest_leaves_nothing_to_pull(reg, tmp_path):
    env = {"BIG_MB": "300"}
    cmd = [sys.executable, str(CHILD), str(tmp_path / "one" / "cache"), str(tmp_path / "one" / "counter"),
           "base,big", "--remote", reg.url()]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    uploads = reg.storage / "docker/registry/v2/repositories/ironforge/stages/_uploads"
    deadline = time.monotonic() + 240
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        # the big blob's upload has started (the base stage's were small and done)
        if len(reg.tags()) == 1 and any(p.stat().st_size > (1 << 20) for p in uploads.glob("*/data")):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.communicate(timeout=30)
    assert killed, "the push finished before it could be killed"
    assert len(reg.tags()) == 1                 # the big stage's tag was never written
    two, err = machine(tmp_path, "two", "base,big", reg.url(), env=env)
    assert [s["reason"] for s in two["steps"]] == ["pulled", "never built"]
    assert two["runs"] == ["big"] and warnings(err) == []
    assert len(reg.tags()) == 2                 # and machine two's push completed


def test_two_machines_pushing_one_key_at_once_is_harmless(reg, tmp_path):
    cmds = [[sys.executable, str(CHILD), str(tmp_path / n / "cache"), str(tmp_path / n / "counter"),
             "base,layer", "--remote", reg.url()] for n in ("one", "two")]
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = [json.loads(o[0]) for o in outs]
    assert all(warnings(o[1]) == [] for o in outs)
    three, err = machine(tmp_path, "three", "base,layer", reg.url())
    assert three["runs"] == [] and warnings(err) == []
    # whichever manifest won, what was pulled is one machine's whole, consistent artifact
    layer = three["files"]["layer"]
    assert any(qemu_img("compare", layer, r["files"]["layer"]).returncode == 0 for r in results)
    assert qemu_img("check", layer).returncode == 0


def test_credentials_from_docker_config_work_and_are_never_logged(tmp_path):
    user, password = "builder", "s3cret-pw-" + os.urandom(6).hex()
    with registry(tmp_path / "registry", user=user, password=password) as server:
        home = tmp_path / "home"
        (home / ".docker").mkdir(parents=True)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {server.hostport: {"auth": token}}}))
        one, err1 = machine(tmp_path, "one", "base,layer", server.url(), "-v", env={"HOME": str(home)})
        assert one["runs"] == ["base", "layer"] and warnings(err1) == []
        assert len(server.tags(auth=(user, password))) == 2
        # the same credentials from the environment, on a second machine
        two, err2 = machine(tmp_path, "two", "base,layer", server.url(), "-v",
                            env={"IRONFORGE_REGISTRY_USER": user, "IRONFORGE_REGISTRY_PASSWORD": password})
        assert two["runs"] == [] and warnings(err2) == []
        # no credentials: one warning, local build
        three, err3 = machine(tmp_path, "three", "base", server.url(), "-v", env={"HOME": str(tmp_path / "nohome")})
        assert three["runs"] == ["base"] and len(warnings(err3)) == 1 and "credentials" in warnings(err3)[0]
        # a wrong password: refused, one warning, and the wrong one is not echoed either
        four, err4 = machine(tmp_path, "four", "base", server.url(), "-v",
                             env={"IRONFORGE_REGISTRY_USER": user, "IRONFORGE_REGISTRY_PASSWORD": "wrong-" + password})
        assert four["runs"] == ["base"] and len(warnings(err4)) == 1
        # the same credentials from a credential helper: the real docker-credential-pass
        store = pass_store(tmp_path / "pass")
        subprocess.run(["docker-credential-pass", "store"], env=store, check=True, capture_output=True, timeout=60,
                       input=json.dumps({"ServerURL": server.hostport, "Username": user, "Secret": password}).encode())
        (tmp_path / "docker5").mkdir()
        (tmp_path / "docker5" / "config.json").write_text(json.dumps({"credsStore": "pass"}))
        five, err5 = machine(tmp_path, "five", "base,layer", server.url(), "-v",
                             env={**store, "DOCKER_CONFIG": str(tmp_path / "docker5")})
        assert five["runs"] == [] and warnings(err5) == []
        logs = err1 + err2 + err3 + err4 + err5
        assert "remote cache" in logs or "pushed" in logs       # -v did log the remote's work
        for secret in (password, token, base64.b64encode(f"{user}:wrong-{password}".encode()).decode()):
            assert secret not in logs
            assert secret not in one.__repr__() + two.__repr__()
