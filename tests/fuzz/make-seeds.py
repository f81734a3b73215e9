#!/usr/bin/env python3
"""Write the command-line seeds of the cmd and ctl harnesses (docs/fuzz.md):
every command of the CLI against the fuzzing pool "fz" (volumes lin, mir;
devices d0..d2), as argv (cmd: each argument NUL-terminated) and as a
control-socket request (ctl: magic "VDC1", argc, len, arguments)."""
import hashlib, os, struct, sys

CMDS = [
    "status", "status fz", "status fz --json", "status fz/lin", "status fz/mir --json",
    "status --help", "--help", "vol --help", "vol create --help",
    "vol list fz", "vol list fz --json",
    "vol create fz/v1 --size 1MiB",
    "vol create fz/v2 --size 1.5MiB --layout linear",
    "vol create fz/m1 --size 1MiB --layout mirror --copies 2",
    "vol create fz/m3 --size 1MiB --layout mirror --copies 3 --allow-same-node --region-size 64KiB",
    "vol create fz/big --size 16EiB",
    "vol create fz/bad.-name --size 1",
    "vol extend fz/lin --size 3MiB", "vol extend fz/lin --size +1MiB",
    "vol extend fz/mir --size +1MiB",
    "vol remove fz/lin", "vol remove fz/nothere",
    "vol repair fz/mir --replace d0 --with d2",
    "vol repair fz/mir --replace d1 --with d2 --wait",
    "resync fz/mir", "resync fz/mir --rate 50MiB", "resync fz/mir --wait",
    "verify fz/mir", "verify fz/mir --repair", "verify fz/lin",
    "vol", "pool", "frobnicate", "status other/x",
]

def main(top):
    for kind in ("cmd", "ctl"):
        os.makedirs(os.path.join(top, kind), exist_ok=True)
    for c in CMDS:
        args = [a.encode() for a in c.split(" ")]
        payload = b"".join(a + b"\0" for a in args)
        name = hashlib.sha1(c.encode()).hexdigest()[:12]
        with open(os.path.join(top, "cmd", name), "wb") as f:
            f.write(payload)
        with open(os.path.join(top, "ctl", name), "wb") as f:
            f.write(struct.pack("<III", 0x31434456, len(args), len(payload)) + payload)

main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
