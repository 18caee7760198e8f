"""The probe's systemd-analyze report, as it reaches the serial log, read back."""

import subprocess

from builder.runner import guest_probe


def test_analysis_lines_are_found_among_console_noise():
    log = ("[   30.1] random: crng init done\r\n"
           "IRONFORGE-ANALYZE Startup finished in 6.9s (kernel) + 34.8s (userspace) = 41.7s\r\n"
           "\x1b[0m[  OK  ] Started foo\r\n"
           "IRONFORGE-ANALYZE multi-user.target @34.7s\r\n"
           "IRONFORGE-ANALYZE └─ssh.service @30.1s +4.5s\r\n"
           "IRONFORGE-READY nonce=abc uptime=42.0\r\n")
    assert guest_probe.analysis(log) == [
        "Startup finished in 6.9s (kernel) + 34.8s (userspace) = 41.7s",
        "multi-user.target @34.7s", "└─ssh.service @30.1s +4.5s"]
    assert guest_probe.analysis("no probe here\n") == []


def test_probe_script_is_valid_posix_shell_and_asks_systemd_analyze():
    text = guest_probe.script(30)
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    assert "systemd-analyze critical-chain" in text and guest_probe.ANALYZE_TAG.strip() in text
    # the report is printed before the uptime is read: the guest's boot time includes it
    assert text.index("systemd-analyze time") < text.index("up=$(cut")
