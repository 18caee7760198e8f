"""Side by side with virt-v2v 2.2 (Debian 12): run it on a PHONY guest with the STAND-IN
virtio-win, export SYSTEM hives with ``hivexregedit --export`` and normalise the differences
the spec documents (windows.md §6), so that what remains can be asserted empty.

Used by tests/windows/test_v2v_side_by_side.py and bench/windows.py.

Normalisations (each one a documented, intended difference):
1. 2.2 writes PCI IDs with SUBSYS (``…&SUBSYS_00021AF4&REV_00``); ironforge follows current
   virt-v2v and drops SUBSYS so other hypervisors' subsystem vendors match.
2. 2.2 labels the DriverDatabase package ``guestor.inf_tmp`` (breaks ``pnputil /e`` and Windows
   Update); ironforge writes ``guestor.inf_<arch>_0000000000000000`` as current virt-v2v does.
3. 2.2 registers viostor only; ironforge registers vioscsi too (boots on either bus): our
   vioscsi keys, its configuration and its PCI IDs are left out of the comparison.
4. First boot: 2.2 registers a ``firstboot`` service run by rhsrvany.exe (not in Debian; a
   stand-in file here); ironforge sets ``Setup\\CmdLine``/``SetupType=2`` (no third-party binary).
   Both are left out; the test checks separately that 2.2 left Setup as it was.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from builder.host.proc import run
from builder.host.tools import require

SUBSYS = re.compile(r"&SUBSYS_[0-9A-Fa-f]{8}")
VIOSCSI_IDS = ("DEV_1004&", "DEV_1048&")
STANDIN_RHSRVANY = b"stand-in rhsrvany.exe: virt-v2v 2.2 only checks that the file exists\n"


def virt_v2v(disk: Path, virtio_win: Path, outdir: Path, accel_env: dict[str, str],
             timeout: int = 3600) -> tuple[Path, float]:
    """``virt-v2v -i disk DISK -o local -os OUTDIR``; returns (converted disk, seconds)."""
    tools = outdir / "virt-tools"
    tools.mkdir(parents=True, exist_ok=True)
    (tools / "rhsrvany.exe").write_bytes(STANDIN_RHSRVANY)
    env = dict(os.environ, **accel_env, VIRT_TOOLS_DATA_DIR=str(tools), VIRTIO_WIN=str(virtio_win))
    t0 = time.monotonic()
    run([require("virt-v2v"), "-i", "disk", str(disk), "-o", "local", "-os", str(outdir)],
        what="virt-v2v (side by side)", timeout=timeout, env=env)
    return outdir / f"{disk.stem}-sda", time.monotonic() - t0


def export_hive(hive: Path) -> str:
    return run([require("hivexregedit"), "--export", str(hive), "\\"], what="hivexregedit --export",
               timeout=120).stdout


def parse_export(text: str) -> dict[str, dict[str, str]]:
    """hivexregedit's export as {key path: {value name: raw right-hand side}}."""
    out: dict[str, dict[str, str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            cur = line[1:-1]
            out[cur] = {}
        elif cur is not None and "=" in line:
            name, _, rhs = line.partition("=") if line.startswith("@") else _split_named(line)
            out[cur][name] = rhs
    return out


def _split_named(line: str) -> tuple[str, str, str]:
    m = re.match(r'^"((?:[^"\\]|\\.)*)"=(.*)$', line)
    if not m:
        raise ValueError(f"unparsed .reg line: {line[:80]}")
    return m.group(1), "=", m.group(2)


def _utf16(rhs: str) -> str:
    """The text of a hex(1)/hex(2)/hex(7) value (UTF-16LE), for substitutions."""
    data = bytes(int(b, 16) for b in rhs.split(":", 1)[1].split(",") if b)
    return data.decode("utf-16-le")


def _hex(kind: str, text: str) -> str:
    data = text.encode("utf-16-le")
    return f"hex({kind}):" + ",".join(f"{b:02x}" for b in data)


def _sub_value(rhs: str, old: str, new: str) -> str:
    m = re.match(r"hex\(([127])\):", rhs)
    if not m or old not in _utf16(rhs):
        return rhs
    return _hex(m.group(1), _utf16(rhs).replace(old, new))


def normalise_v2v(reg: dict[str, dict[str, str]], win_arch: str) -> dict[str, dict[str, str]]:
    label = f"guestor.inf_{win_arch}_0000000000000000"
    out = {}
    for key, values in reg.items():
        if re.search(r"\\Services\\firstboot(\\|$)", key, re.I):
            continue
        k = SUBSYS.sub("", key).replace("guestor.inf_tmp", label)
        vals = {n: _sub_value(v, "guestor.inf_tmp", label) for n, v in values.items()}
        if key == "\\Setup":
            vals = {n: v for n, v in vals.items() if n not in ("CmdLine", "SetupType")}
        out[k] = vals
    return out


def normalise_ours(reg: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    out = {}
    for key, values in reg.items():
        if re.search(r"\\Services\\vioscsi$", key) or "guestor_vioscsi_conf" in key \
                or any(i in key for i in VIOSCSI_IDS):
            continue
        vals = dict(values)
        if key.endswith("\\DriverInfFiles\\guestor.inf") and "Configurations" in vals:
            vals["Configurations"] = _sub_value(vals["Configurations"], "guestor_vioscsi_conf\0", "")
        if key == "\\Setup":
            vals = {n: v for n, v in vals.items() if n not in ("CmdLine", "SetupType")}
        out[key] = vals
    return out


def differences(ours: dict, theirs: dict) -> list[str]:
    """Lines describing every key/value that differs after normalisation (empty = equal)."""
    lines = []
    for k in sorted(set(ours) | set(theirs)):
        if k not in theirs:
            lines.append(f"only ironforge: [{k}]")
            continue
        if k not in ours:
            lines.append(f"only virt-v2v: [{k}]")
            continue
        for n in sorted(set(ours[k]) | set(theirs[k])):
            a, b = ours[k].get(n), theirs[k].get(n)
            if a != b:
                lines.append(f"[{k}] {n!r}: ironforge {a} / virt-v2v {b}")
    return lines


def v2v_files_normalised(files: list[str]) -> list[str]:
    """2.2 copies *.pdb and sriov's vioprot.* (current virt-v2v and ironforge skip them)."""
    return sorted(f for f in files if not f.endswith(".pdb") and not f.startswith("vioprot."))
