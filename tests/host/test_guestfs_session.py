"""The one libguestfs session helper: the accelerator reaches the handle (no launch needed here;
tests/host/test_guest_os.py checks the same on a launched session)."""

from builder.host.accel import Accel
from builder.host.guestfs_session import new_handle


def test_a_non_kvm_accel_gives_a_force_tcg_handle():
    g = new_handle(Accel("tcg", "test"))
    try:
        assert g.get_backend() == "direct"
        assert "force_tcg" in g.get_backend_settings()
    finally:
        g.close()


def test_a_kvm_accel_leaves_the_appliance_on_kvm():
    g = new_handle(Accel("kvm", "test"))
    try:
        assert g.get_backend() == "direct" and "force_tcg" not in g.get_backend_settings()
    finally:
        g.close()
