#!/usr/bin/env python3
"""Summarises valgrind memcheck XML files: "definitely lost" bytes from our code
(any stack frame in libgstffnetseg.so) versus third-party code only, and memory errors
(invalid reads/writes, overlaps, uninitialised values) whose innermost frame is ours.

    leaks.py FILE.xml... ; exit status 1 when our code lost anything or has memory errors
"""
import sys
import xml.etree.ElementTree as ET

OURS = "libgstffnetseg.so"
ALLOCATORS = ("vgpreload_memcheck", "ld-linux", "libc.so")


def frames(err):
    out = []
    stack = err.find("stack")
    for f in stack.findall("frame") if stack is not None else []:
        out.append(((f.findtext("obj") or "?"), (f.findtext("fn") or "?")))
    return out


def main(paths):
    total_ours = 0
    for path in paths:
        root = ET.parse(path).getroot()
        ours, third, kinds, errors, possibly = [], [], {}, [], {}
        for err in root.iter("error"):
            kind = err.findtext("kind")
            xw = err.find("xwhat")
            lost = int(xw.findtext("leakedbytes")) if xw is not None else 0
            n, b = kinds.get(kind, (0, 0))
            kinds[kind] = (n + 1, b + lost)
            if not kind.startswith("Leak_"):
                st = frames(err)
                top = next((o for o, _ in st if "vgpreload" not in o), "?")
                if OURS in top:
                    errors.append(f"{kind}: {err.findtext('what')}: " + " < ".join(fn for _, fn in st[:8]))
                continue
            if kind == "Leak_PossiblyLost":
                key = "ours" if any(OURS in o for o, _ in frames(err)) else "third"
                possibly[key] = possibly.get(key, 0) + lost
            if kind != "Leak_DefinitelyLost":
                continue
            st = frames(err)
            first = next((o for o, _ in st if not any(a in o for a in ALLOCATORS)), "?")
            entry = (lost, first.rsplit("/", 1)[-1], " < ".join(fn for _, fn in st[:8]))
            (ours if any(OURS in o for o, _ in st) else third).append(entry)
        sc = root.find("suppcounts")
        supp = {s.findtext("name"): int(s.findtext("count")) for s in (sc.iter("pair") if sc is not None else [])}
        print(f"== {path}")
        for k in sorted(kinds):
            n, b = kinds[k]
            print(f"   {k}: {n} records" + (f", {b} bytes" if k.startswith("Leak_") else ""))
        print(f"   memory errors in our code (innermost frame in {OURS}): {len(errors)}")
        for e in errors[:10]:
            print(f"      {e}")
        print(f"   definitely lost, our code (a frame in {OURS}): "
              f"{sum(e[0] for e in ours)} bytes in {len(ours)} records")
        for lost, first, stack in sorted(ours, reverse=True)[:10]:
            print(f"      {lost} B, allocated in {first}: {stack}")
        print(f"   definitely lost, third-party only: {sum(e[0] for e in third)} bytes in {len(third)} records")
        for lost, first, stack in sorted(third, reverse=True)[:10]:
            print(f"      {lost} B, allocated in {first}: {stack}")
        print(f"   possibly lost (for information; thread-local storage and pools show here): "
              f"{possibly.get('ours', 0)} bytes with a frame in {OURS}, {possibly.get('third', 0)} bytes third-party only")
        if supp:
            print("   suppressed: " + ", ".join(f"{k} x{v}" for k, v in supp.items()))
        total_ours += sum(e[0] for e in ours) + len(errors)
    return 1 if total_ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
