#!/usr/bin/env python3
"""Pack what tests/gpu/cuda_check.py needs for a bare x86-64 NVIDIA machine that has a
driver, Python and the CUDA 13 runtime libraries (e.g. PyTorch's nvidia-* wheels) but no
GStreamer, no OpenCV C++ libraries and no onnxruntime-gpu: the machines lent for GPU checks.

    .venv/bin/python tests/gpu/bundle.py --ort-gpu-wheel onnxruntime_gpu-1.31.1-...whl \
        --out out/gpucheck [--keep-sm 90]

Writes two parts, each small enough for one transfer of at most 64 MiB:

    OUT/part1/cuda.xz           libonnxruntime_providers_cuda.so (xz). --keep-sm 90 zeroes the
                                cubins for every other GPU architecture (the library holds
                                sm_75..sm_120; an H100/H200 runs only the sm_90 ones; the wheel
                                has no PTX), so that it compresses to ~50 MB instead of ~186 MB.
    OUT/part2/bundle.tar.xz     bundle/bin      gst-launch-1.0, segtool (this build)
                                bundle/gst      GStreamer plugins: ours + the few stock ones used
                                bundle/lib      their shared libraries (Debian 12), ONNX Runtime GPU
                                bundle/py       the onnxruntime-gpu Python package (the peer's ORT)
                                bundle/models   quantized selfie model
                                bundle/media    vtest.avi and the calibration photos

OpenCV's imgcodecs and videoio pull in GDAL, FFmpeg and ~170 MB of other libraries; the
checks use neither (no background image, no video decoding in Rust), so the bundle carries
*stubs* of those two libraries that define the symbols our binaries import and abort with a
message if one is ever called. Everything else is the real Debian library.
"""

from __future__ import annotations

import argparse
import lzma
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBDIR = "/lib/x86_64-linux-gnu"
GST_PLUGINS = ("coreelements", "rawparse", "videotestsrc", "videoconvertscale")
STUBBED = ("libopencv_imgcodecs.so.406", "libopencv_videoio.so.406")
# Provided by every glibc-based system (and newer there than Debian 12's): never bundled.
SYSTEM = ("libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "ld-linux",
          "libstdc++.so", "libgcc_s.so", "libresolv.so")
MEDIA = ("vtest.avi", "messi5.jpg", "basketball1.png", "home.jpg", "building.jpg",
         "fruits.jpg", "aero1.jpg", "baboon.jpg", "stuff.jpg")
FATBIN_MAGIC = 0xBA55ED50


def needed(path: str) -> list[str]:
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=True).stdout
    return [line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line]


def closure(roots: list[str]) -> list[str]:
    """Shared libraries the roots need (breadth first over NEEDED), minus glibc/libstdc++ and
    the stubbed libraries (whose own dependencies are not wanted)."""
    seen, todo, found = set(), list(roots), []
    while todo:
        for name in needed(todo.pop()):
            if name in seen or name.startswith(SYSTEM) or name in STUBBED:
                continue
            seen.add(name)
            path = os.path.join(LIBDIR, name)
            if not os.path.exists(path):
                raise SystemExit(f"cannot find {name} in {LIBDIR}")
            found.append(path)
            todo.append(path)
    return found


def defined_symbols(lib: str) -> dict[str, tuple[str, int]]:
    out = subprocess.run(["readelf", "--dyn-syms", "-W", lib], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] != "UND" and f[4] in ("GLOBAL", "WEAK"):
            syms[f[7]] = (f[3], int(f[2], 0))
    return syms


def undefined_symbols(binary: str) -> set[str]:
    out = subprocess.run(["readelf", "--dyn-syms", "-W", binary], capture_output=True,
                         text=True, check=True).stdout
    return {f[7].split("@")[0] for f in (line.split() for line in out.splitlines())
            if len(f) >= 8 and f[6] == "UND"}


def build_stub(name: str, users: list[str], dest: str) -> int:
    """A library named ``name`` defining what ``users`` import from the real one."""
    real = defined_symbols(os.path.join(LIBDIR, name))
    wanted = sorted(set().union(*(undefined_symbols(u) for u in users)) & set(real))
    lines = ["#include <stdio.h>", "#include <stdlib.h>",
             f'static void stub_called(const char *s) {{ fprintf(stderr, "{name} is a stub in '
             f'this GPU-check bundle; %s was called\\n", s); abort(); }}']
    for i, sym in enumerate(wanted):
        kind, size = real[sym]
        if kind == "FUNC":
            lines.append(f'void f{i}(void) __asm__("{sym}"); void f{i}(void) {{ stub_called("{sym}"); }}')
        else:  # data (vtables, typeinfo): zero bytes of the right size, never used
            lines.append(f'char d{i}[{max(size, 1)}] __asm__("{sym}") = {{0}};')
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "stub.c")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-Wl,-soname,{name}", "-o",
                        os.path.join(dest, name), src], check=True)
    return len(wanted)


def elf_section(elf: bytes, wanted: bytes) -> tuple[int, int]:
    """(file offset, size) of a section of a 64-bit little-endian ELF file."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    entsize, count, names = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", elf, shoff + k * entsize) for k in range(count)]
    names_at = headers[names][4]
    for name, _type, _flags, _addr, offset, size in headers:
        if elf[names_at + name:].split(b"\0", 1)[0] == wanted:
            return offset, size
    raise SystemExit(f"no {wanted.decode()} section")


def keep_only_sm(lib: bytes, sm: int) -> tuple[bytearray, int, int]:
    """Zero the payload of every fatbin cubin/PTX entry not built for ``sm``."""
    start, size = elf_section(lib, b".nv_fatbin")
    b = bytearray(lib)
    p, end, zeroed, kept = start, start + size, 0, 0
    while p < end:
        magic, _version, header, fat = struct.unpack_from("<IHHQ", b, p)
        if magic != FATBIN_MAGIC:  # alignment padding between fatbins
            p += 8
            continue
        q, q_end = p + header, p + header + fat
        while q < q_end:
            _kind, _v, entry_header, padded = struct.unpack_from("<HHII", b, q)
            arch = struct.unpack_from("<I", b, q + 28)[0]
            body = slice(q + entry_header, q + entry_header + padded)
            if arch == sm:
                kept += padded
            else:
                b[body] = bytes(padded)
                zeroed += padded
            q += entry_header + padded
        p = q_end
    return b, kept, zeroed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ort-gpu-wheel", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "gpucheck"))
    ap.add_argument("--keep-sm", type=int, default=0, help="keep only this GPU architecture's cubins (0: all)")
    ap.add_argument("--media", default="/usr/share/doc/opencv-doc/examples/data")
    a = ap.parse_args()

    plugin = os.path.join(ROOT, "target", "release", "libgstffnetseg.so")
    segtool = os.path.join(ROOT, "target", "release", "segtool")
    bench = os.path.join(ROOT, "target", "release", "ffnetseg-bench")
    gst_launch = shutil.which("gst-launch-1.0")
    plugins = [os.path.join(LIBDIR, "gstreamer-1.0", f"libgst{p}.so") for p in GST_PLUGINS]
    for p in [plugin, segtool, bench, gst_launch, *plugins]:
        if not p or not os.path.exists(p):
            raise SystemExit(f"missing {p}: run make build (and apt install gstreamer1.0-tools)")

    shutil.rmtree(a.out, ignore_errors=True)
    for part in ("part1", "part2"):
        os.makedirs(os.path.join(a.out, part))
    stage = tempfile.mkdtemp()
    b = os.path.join(stage, "bundle")
    for d in ("bin", "gst", "lib", "py", "models", "media"):
        os.makedirs(os.path.join(b, d))

    shutil.copy2(gst_launch, os.path.join(b, "bin"))
    shutil.copy2(segtool, os.path.join(b, "bin"))
    shutil.copy2(bench, os.path.join(b, "bin"))
    for p in [plugin, *plugins]:
        shutil.copy2(p, os.path.join(b, "gst"))
    roots = [gst_launch, segtool, bench, plugin, *plugins]
    for lib in closure(roots):
        shutil.copy2(lib, os.path.join(b, "lib"))
    for name in STUBBED:
        n = build_stub(name, roots, os.path.join(b, "lib"))
        print(f"stub {name}: {n} symbols")

    with zipfile.ZipFile(a.ort_gpu_wheel) as z:
        for info in z.infolist():
            n = info.filename
            if not n.startswith("onnxruntime/") or n.endswith("/"):
                continue
            if n.endswith(("providers_cuda.so", "providers_tensorrt.so")):
                continue  # CUDA: part1 (it is placed in bundle/lib and linked); TensorRT: no libnvinfer there
            data = z.read(n)
            if n.startswith("onnxruntime/capi/libonnxruntime.so."):
                with open(os.path.join(b, "lib", "libonnxruntime.so"), "wb") as f:
                    f.write(data)
                continue
            dest = os.path.join(b, "py", n)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            if n.endswith("providers_shared.so"):
                shutil.copy2(dest, os.path.join(b, "lib"))
        cuda = z.read("onnxruntime/capi/libonnxruntime_providers_cuda.so")
    if a.keep_sm:
        cuda, kept, zeroed = keep_only_sm(cuda, a.keep_sm)
        print(f"CUDA provider: kept {kept / 1e6:.1f} MB of sm_{a.keep_sm} cubins, zeroed {zeroed / 1e6:.1f} MB")
    with lzma.open(os.path.join(a.out, "part1", "cuda.xz"), "wb", preset=6) as f:
        f.write(cuda)

    w8a8 = os.path.join(ROOT, "out", "models", "selfie_segmentation_w8a8.onnx")
    if os.path.exists(w8a8):
        shutil.copy2(w8a8, os.path.join(b, "models"))
    for m in MEDIA:
        shutil.copy2(os.path.join(a.media, m), os.path.join(b, "media"))
    with tarfile.open(os.path.join(a.out, "part2", "bundle.tar.xz"), "w:xz") as t:
        t.add(b, arcname="bundle")
    shutil.rmtree(stage)
    for part in ("part1/cuda.xz", "part2/bundle.tar.xz"):
        print(f"{part}: {os.path.getsize(os.path.join(a.out, part)) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
