#!/usr/bin/env python3
"""The layout rules of src/ (README, "Design"), checked on the source text.

- Layers: a file includes project headers of its own folder or of the folders
  below it (core < quant < calib, formats < pipeline < cli); main.c may use all.
- System headers with one home: mpi.h in pipeline/comm.c, hdf5.h in
  calib/calib.c, cblas.h and lapacke.h in calib/linalg.c, zlib.h and
  isa-l's headers in core/crc.c (no other file knows which library runs).
- Sizes: no .c file over 700 lines, pipeline/run.c at most 300; 90 % of
  functions at most 40 lines, and none over 80 but the ones listed in
  LONG_ALLOWED (switches and state machines that read better whole).

Prints the figures, one line per broken rule, and exits 1 if any.
"""
import os
import re
import sys

LAYERS = {"core": 0, "quant": 1, "calib": 2, "formats": 2, "pipeline": 3, "cli": 4}
ONE_HOME = {"mpi.h": "pipeline/comm.c", "hdf5.h": "calib/calib.c", "cblas.h": "calib/linalg.c",
            "lapacke.h": "calib/linalg.c", "zlib.h": "core/crc.c", "isa-l.h": "core/crc.c",
            "isa-l/crc.h": "core/crc.c"}
# Function: the pickle VM's opcode switch.
LONG_ALLOWED = {("formats/pickle.c", "step")}
MAX_FILE, MAX_RUN, MAX_FN, MAX_FN_P90, P90 = 700, 300, 80, 40, 0.9

FUNC = re.compile(r"^(?!static inline)[A-Za-z_][\w \*]*?\b(\w+)\(([^;]*)$")


def functions(path):
    """(name, lines) of each function defined at column 0, signature to closing brace."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FUNC.match(lines[i])
        if m and not lines[i].startswith(("if", "for", "while", "return", "typedef", "#")):
            j = i
            while j < len(lines) and lines[j] != "{" and not lines[j].endswith(";"):
                j += 1
            if j < len(lines) and lines[j] == "{":
                k = j
                while k < len(lines) and lines[k] != "}":
                    k += 1
                out.append((m.group(1), k - i + 1))
                i = k
        i += 1
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    bad = []
    lengths = []
    for folder, _, files in sorted(os.walk(src)):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, src)
            layer = rel.split("/")[0] if "/" in rel else None
            text = open(path, encoding="utf-8").read()
            for inc in re.findall(r'^#include <([\w/-]+\.h)>', text, re.M):
                home = ONE_HOME.get(inc)
                if home and rel != home:
                    bad.append(f"{rel}: includes <{inc}>, which only {home} may include")
            if layer:
                for inc in re.findall(r'^#include "([\w/]+\.h)"', text, re.M):
                    owner = [d for d in LAYERS if os.path.exists(os.path.join(src, d, inc))]
                    if not owner:
                        bad.append(f"{rel}: includes \"{inc}\", which is in no layer folder")
                    elif owner[0] != layer and LAYERS[owner[0]] >= LAYERS[layer]:
                        bad.append(f"{rel}: includes \"{inc}\" of {owner[0]}/, which is not below {layer}/")
            if f.endswith(".c"):
                n = text.count("\n")
                cap = MAX_RUN if rel == "pipeline/run.c" else MAX_FILE
                if n > cap:
                    bad.append(f"{rel}: {n} lines, more than {cap}")
                for name, length in functions(path):
                    lengths.append(length)
                    if length > MAX_FN and (rel, name) not in LONG_ALLOWED:
                        bad.append(f"{rel}: {name}() is {length} lines, more than {MAX_FN}")
    lengths.sort()
    p90 = lengths[int(P90 * (len(lengths) - 1))] if lengths else 0
    median = lengths[len(lengths) // 2] if lengths else 0
    print(f"{len(lengths)} functions: median {median} lines, 90th percentile {p90}, longest {lengths[-1] if lengths else 0}")
    if p90 > MAX_FN_P90:
        bad.append(f"the 90th percentile of function lengths is {p90} lines, more than {MAX_FN_P90}")
    for b in bad:
        print("not ok - " + b)
    print(f"{len(bad)} rules broken")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
