"""What runs inside a guest to prove it booted: a POSIX shell script and its systemd unit.

The script works with a full Debian userland and with busybox alone (the tiny test guest runs the very
same script as its init's last step). It reads the per-boot nonce from QEMU fw_cfg (the
``qemu_fw_cfg`` module exposes it under /sys/firmware) or, failing that, from SMBIOS type 11 OEM
strings; gathers arch, kernel, host name, root device, bound virtio drivers and the systemd state (waiting,
bounded, for the boot to settle); prints ``systemd-analyze`` time, critical chain and blame as ``IRONFORGE-ANALYZE`` lines, then
one ``IRONFORGE-READY`` line on ttyS0; and powers off.

The unit is ``Type=simple`` on purpose: a oneshot unit still running would itself keep
``systemctl is-system-running`` at "starting" until it gave up.
"""

from __future__ import annotations

SCRIPT_PATH = "/usr/local/sbin/ironforge-probe"
UNIT_NAME = "ironforge-probe.service"
# where both injection routes (runner.inject, runner.inject_host) put the unit and its enable link
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
VERSION = 3

_SCRIPT = r"""#!/bin/sh
# ironforge boot probe (injected into a throw-away verification overlay only).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SETTLE=@SETTLE@
POWEROFF=${IRONFORGE_POWEROFF:-1}
clean() { tr -s ' \t\n' '___' | sed 's/_*$//'; }

nonce=none; src=none
modprobe qemu_fw_cfg 2>/dev/null
f=/sys/firmware/qemu_fw_cfg/by_name/opt/ironforge/nonce/raw
i=0
while [ ! -r "$f" ] && [ -d /sys/firmware/qemu_fw_cfg ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
if [ -r "$f" ]; then
    nonce=$(cat "$f"); src=fw_cfg
else
    for e in /sys/firmware/dmi/entries/11-*/raw; do
        [ -r "$e" ] || continue
        v=$(tr '\000' '\n' < "$e" | sed -n 's/.*ironforge\.nonce=//p' | head -n 1)
        if [ -n "$v" ]; then nonce=$v; src=smbios; break; fi
    done
fi

state=none; failed=none
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    if command -v timeout >/dev/null 2>&1; then
        state=$(timeout "$SETTLE" systemctl is-system-running --wait 2>/dev/null)
    fi
    [ -n "$state" ] || state=$(systemctl is-system-running 2>/dev/null)
    [ -n "$state" ] || state=unknown
    failed=$(systemctl list-units --state=failed --plain --no-legend 2>/dev/null | awk '{print $1}' | tr '\n' ',' | sed 's/,*$//')
    [ -n "$failed" ] || failed=none
fi

virtio=""
for d in /sys/bus/virtio/drivers/*; do
    [ -d "$d" ] || continue
    for l in "$d"/virtio*; do
        if [ -e "$l" ]; then virtio="$virtio,${d##*/}"; break; fi
    done
done
for l in /sys/bus/pci/drivers/virtio-pci/0000:*; do
    if [ -e "$l" ]; then virtio="$virtio,virtio-pci"; break; fi
done
virtio=${virtio#,}; [ -n "$virtio" ] || virtio=none

root=""
command -v findmnt >/dev/null 2>&1 && root=$(findmnt -n -o SOURCE / 2>/dev/null | head -n 1)
[ -n "$root" ] || root=$(awk '$2 == "/" { r = $1 } END { print r }' /proc/mounts)
[ -e "$root" ] && root=$(readlink -f "$root")
rdev=${root##*/}
rootdisks=""
if [ -n "$rdev" ] && [ -d "/sys/class/block/$rdev/slaves" ] && [ -n "$(ls "/sys/class/block/$rdev/slaves" 2>/dev/null)" ]; then
    for s in /sys/class/block/$rdev/slaves/*; do rootdisks="$rootdisks,${s##*/}"; done
elif [ -n "$rdev" ]; then
    rootdisks=$rdev
fi
rootdisks=${rootdisks#,}; [ -n "$rootdisks" ] || rootdisks=none
[ -n "$root" ] || root=none

tty=/dev/ttyS0
[ -c "$tty" ] && [ -w "$tty" ] || tty=/dev/console
# Where the boot spent its time, into the serial log (the verify evidence): systemd's own
# account, the chain that decided when the boot finished, and the slowest units.
if [ "$state" != none ] && command -v systemd-analyze >/dev/null 2>&1; then
    { systemd-analyze time; systemd-analyze critical-chain --no-pager; systemd-analyze blame --no-pager | head -n 15; } 2>&1 \
        | tr -d '\033' | sed 's/^/IRONFORGE-ANALYZE /' > "$tty"
fi

host=$(cat /proc/sys/kernel/hostname 2>/dev/null | clean); [ -n "$host" ] || host=none
up=$(cut -d ' ' -f 1 /proc/uptime)
line="IRONFORGE-READY nonce=$(printf %s "$nonce" | clean) src=$src arch=$(uname -m | clean) kernel=$(uname -r | clean) root=$(printf %s "$root" | clean) rootdisks=$rootdisks virtio=$virtio state=$(printf %s "$state" | clean) failed=$failed host=$host probe=@VERSION@ uptime=$up"
printf '\r\n%s\r\n' "$line" > "$tty"
echo "$line"

if [ "$POWEROFF" = 1 ]; then
    sleep 1
    if [ -d /run/systemd/system ]; then systemctl poweroff --no-block; else poweroff -f; fi
fi
"""

_UNIT = f"""[Unit]
Description=ironforge boot probe (verification overlay only)
After=multi-user.target

[Service]
Type=simple
ExecStart={SCRIPT_PATH}
StandardOutput=journal

[Install]
WantedBy=multi-user.target
"""


def script(settle_seconds: int = 120) -> str:
    """The probe script; ``settle_seconds`` bounds the wait for systemd to finish booting."""
    return _SCRIPT.replace("@SETTLE@", str(int(settle_seconds))).replace("@VERSION@", str(VERSION))


def unit() -> str:
    return _UNIT


ANALYZE_TAG = "IRONFORGE-ANALYZE "


def analysis(serial_text: str) -> list[str]:
    """The probe's systemd-analyze report from a serial log, tag removed (empty if none)."""
    out = []
    for line in serial_text.replace("\r", "").splitlines():
        i = line.find(ANALYZE_TAG)
        if i >= 0:
            out.append(line[i + len(ANALYZE_TAG):])
    return out
