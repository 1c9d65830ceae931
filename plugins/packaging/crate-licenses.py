#!/usr/bin/env python3
"""Lists the Rust crates linked into a binary of this workspace, with their licences, for a
Debian copyright file: the normal (not build, not dev) dependency closure of the given
workspace packages for one target, from `cargo metadata --offline`.

    crate-licenses.py TARGET_TRIPLE PACKAGE [PACKAGE...]   e.g. x86_64-unknown-linux-gnu gstffnetseg
"""
import json
import subprocess
import sys

triple, roots = sys.argv[1], set(sys.argv[2:])
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--offline", "--format-version", "1", "--filter-platform", triple],
    check=True, capture_output=True, text=True).stdout)
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
todo = [i for i, p in pkgs.items() if p["name"] in roots and p["source"] is None]
seen = set()
while todo:
    i = todo.pop()
    if i in seen:
        continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] is None for k in d["dep_kinds"]):
            todo.append(d["pkg"])
for i in sorted(seen, key=lambda i: (pkgs[i]["name"], pkgs[i]["version"])):
    p = pkgs[i]
    if p["source"] is None:
        continue  # this workspace's own crates: covered by the package's main paragraph
    print(f" {p['name']} {p['version']}: {p.get('license') or p.get('license_file') or 'unknown'}")
