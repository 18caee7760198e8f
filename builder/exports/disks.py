"""The plain disk formats: one ``qemu-img convert`` each, with the options the platform needs
(specs/exports-rebuilds-scale.md §6)."""

from __future__ import annotations

from pathlib import Path

from builder import qemu_img

VMDK_HWVERSION = 14         # ESXi 6.7 and later; the OVA's VirtualSystemType says the same
VMDK_OPTIONS = f"subformat=streamOptimized,adapter_type=lsilogic,hwversion={VMDK_HWVERSION}"
MiB = 1 << 20
VHD_MAX = 2040 << 30        # the VHD format's (and Azure's) limit


def _convert(src: Path, src_format: str, dst: Path, fmt: str, options: str | None = None,
             compress: bool = False) -> str:
    qemu_img.convert(src, dst, fmt, src_format=src_format, options=options, compress=compress,
                     what=f"export {dst.name}")
    return dst.name


# qcow2 compression codecs: zlib, readable by any qcow2 consumer; zstd (QEMU 5.1+, an
# incompatible-feature bit older readers refuse), about 7x faster to write here and smaller.
CODECS = ("zstd", "zlib")


def qcow2(src, src_format, machine, workdir, base, *, compress: bool = True, compression: str = "zstd") -> str:
    if compression not in CODECS:
        raise ValueError(f"unknown qcow2 compression {compression!r}")
    options = f"compression_type={compression}" if compress else None
    return _convert(src, src_format, workdir / f"{base}.qcow2", "qcow2", options=options, compress=compress)


def raw(src, src_format, machine, workdir, base) -> str:
    return _convert(src, src_format, workdir / f"{base}.raw", "raw")


def vmdk(src, src_format, machine, workdir, base) -> str:
    return _convert(src, src_format, workdir / f"{base}.vmdk", "vmdk", VMDK_OPTIONS)


def vhdx(src, src_format, machine, workdir, base) -> str:
    return _convert(src, src_format, workdir / f"{base}.vhdx", "vhdx", "subformat=dynamic")


def vdi(src, src_format, machine, workdir, base) -> str:
    return _convert(src, src_format, workdir / f"{base}.vdi", "vdi")


def vhd_azure(src, src_format, machine, workdir, base) -> str:
    """Azure takes only a fixed VHD whose size is a whole number of MiB. force_size keeps qemu
    from rounding to CHS geometry (which would break that rule); a size that is not already a
    MiB multiple is grown through a throwaway qcow2 overlay (the new tail reads as zeroes)."""
    vsize = int(qemu_img.info(src, fmt=src_format)["virtual-size"])
    rounded = -(-vsize // MiB) * MiB
    if rounded != vsize:
        grown = workdir / f".{base}.grow.qcow2"
        qemu_img.run(["create", "-q", "-f", "qcow2", "-F", src_format, "-b", str(Path(src).resolve()),
                      str(grown), str(rounded)], "export vhd-azure: round up to a MiB")
        try:
            return _convert(grown, "qcow2", workdir / f"{base}.vhd", "vpc", "subformat=fixed,force_size=on")
        finally:
            grown.unlink(missing_ok=True)
    return _convert(src, src_format, workdir / f"{base}.vhd", "vpc", "subformat=fixed,force_size=on")
