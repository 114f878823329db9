#!/usr/bin/env python3
"""Checks for test_jobs.sh (job files, zoo reports, resumable partial outputs).

  report BASE PREFIX JOB NAME=STATUS...
      PREFIX.json and PREFIX.md are the zoo report of job file JOB (as given on the
      command line), with exactly these models in this order and these statuses. Every
      "ok" or "up to date" row's figures agree with its output's own metadata (the output
      path in the row counts from BASE, the folder mq-dist ran in); every "failed" or
      "interrupted" row has a non-zero exit code, an error and no figures; the summary
      counts the rows; the Markdown table has one row per model, in order, with its status.
      NAME=STATUS:CODE also checks the row's exit code.
  meta FILE KEY          prints the metadata value KEY of a .safetensors or .pt output
  fate FILE TENSOR       prints the layers record's action of TENSOR (quantized or kept)
  flip PARTIAL REF       flips one byte of PARTIAL inside a stretch of tensor data that
                         equals REF's (a finished unit), and prints its offset
  patch FILE             flips the sign bit of the first value of the largest F32 tensor in
                         place (same size, same header); running it twice restores the file
"""

import json
import os
import struct
import sys
import zipfile

import numpy as np


def die(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def metadata(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/mq_metadata.json")]
            if len(names) != 1:
                die("%s: no mq_metadata.json record" % path)
            return json.loads(z.read(names[0]))
    head, _ = st_header(path)
    return head.get("__metadata__", {})


def close(a, b):
    """Exact: the report's numbers are the metadata's strings read with strtod (sizes, ratio,
    sqnr_db) or the layer record's %.9g read by cJSON, written back by cJSON_Print, which
    prints %.15g or else %.17g, whichever reads back to the same double."""
    return a is not None and b is not None and float(a) == float(b)


def check_row(base, row):
    name = row.get("name")
    out = row.get("output")
    if not out:
        die("%s: no output in its row" % name)
    path = os.path.join(base, out)
    if not os.path.isfile(path):
        die("%s: output %s missing" % (name, path))
    m = metadata(path)
    pairs = [("size_before_mib", "original_size_mb"), ("size_after_mib", "quantized_size_mb"),
             ("compression_ratio", "compression_ratio"), ("sqnr_db", "sqnr_db")]
    for rk, mk in pairs:
        if not close(row.get(rk), m.get(mk)):
            die("%s: report %s = %r, output metadata %s = %r" % (name, rk, row.get(rk), mk, m.get(mk)))
    if row.get("scheme") != m.get("scheme"):
        die("%s: report scheme %r, metadata %r" % (name, row.get("scheme"), m.get("scheme")))
    layers = json.loads(m["layers"])
    worst = None
    for lname, rec in layers.items():
        if rec.get("action") == "quantized" and rec.get("sqnr_db") is not None:
            if worst is None or rec["sqnr_db"] < worst[1]:
                worst = (lname, rec["sqnr_db"])
    if worst is None or row.get("worst_layer") != worst[0] or not close(row.get("worst_layer_sqnr_db"), worst[1]):
        die("%s: report worst layer %r (%r), metadata gives %r" %
            (name, row.get("worst_layer"), row.get("worst_layer_sqnr_db"), worst))
    if row.get("exit_code") != 0 or "error" in row:
        die("%s: a %s row with exit code %r / error %r" % (name, row["status"], row.get("exit_code"), row.get("error")))
    if not isinstance(row.get("time_s"), (int, float)) or row["time_s"] < 0:
        die("%s: time_s %r" % (name, row.get("time_s")))


def cmd_report(base, prefix, job, expects):
    try:
        rep = json.load(open(prefix + ".json"))
        md = open(prefix + ".md").read()
    except (OSError, ValueError) as e:
        die("cannot read the report %s.json/.md: %s" % (prefix, e))
    if os.path.basename(str(rep.get("job"))) != os.path.basename(job):
        die("report job %r, expected %r" % (rep.get("job"), job))
    if not str(rep.get("tool", "")).startswith("mq-dist"):
        die("report tool %r" % rep.get("tool"))
    rows = rep.get("models", [])
    want = []
    for e in expects:
        name, status = e.split("=", 1)
        code = None
        if ":" in status:
            status, code = status.split(":")
            code = int(code)
        want.append((name, status, code))
    got = [(r.get("name"), r.get("status")) for r in rows]
    if got != [(n, s) for n, s, _ in want]:
        die("statuses %r, expected %r" % (got, [(n, s) for n, s, _ in want]))
    for row, (name, status, code) in zip(rows, want):
        if code is not None and row.get("exit_code") != code:
            die("%s: exit code %r, expected %d" % (name, row.get("exit_code"), code))
        for k in ("input", "output", "exit_code", "time_s"):
            if k not in row:
                die("%s: no %s in its row" % (name, k))
        if status in ("ok", "up to date"):
            check_row(base, row)
        else:
            if not row.get("exit_code") or not row.get("error"):
                die("%s: %s row without exit code or error: %r" % (name, status, row))
            for k in ("sqnr_db", "size_after_mib", "worst_layer"):
                if row.get(k) is not None:
                    die("%s: %s row has %s = %r" % (name, status, k, row[k]))
    s = rep.get("summary", {})
    count = lambda st: sum(1 for _, x, _ in want if x == st)
    exp = {"models": len(want), "ok": count("ok"), "up_to_date": count("up to date"),
           "failed": len(want) - count("ok") - count("up to date")}
    if {k: s.get(k) for k in exp} != exp:
        die("summary %r, expected %r" % (s, exp))
    table = [l for l in md.splitlines() if l.startswith("|")]
    body = [l for l in table[2:]]
    if len(table) < 2 or not set(table[1].replace("|", "").strip()) <= set("-: "):
        die("no Markdown table in %s.md" % prefix)
    if len(body) != len(want):
        die("%d Markdown rows for %d models" % (len(body), len(want)))
    for line, (name, status, _) in zip(body, want):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] != name or not cells[1].startswith(status):
            die("Markdown row %r for %s (%s)" % (line, name, status))
    print("report: %d models, statuses and figures agree with the outputs" % len(want))


def cmd_flip(partial, ref):
    _, base = st_header(ref)
    a = np.memmap(partial, dtype=np.uint8, mode="r+")
    b = np.memmap(ref, dtype=np.uint8, mode="r")
    if a.size != b.size:
        die("partial %d bytes, reference %d" % (a.size, b.size))
    blk = 1 << 16
    for off in range(base + (-base % blk), b.size - blk, blk):
        x, y = a[off:off + blk], b[off:off + blk]
        if np.count_nonzero(y) > blk // 2 and np.array_equal(x, y):
            pos = off + blk // 2
            a[pos] ^= 0xFF
            a.flush()
            print(pos)
            return
    die("no finished unit's data found in %s" % partial)


def cmd_patch(path):
    head, base = st_header(path)
    name, t = max(((k, v) for k, v in head.items() if k != "__metadata__" and v["dtype"] == "F32"),
                  key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    with open(path, "r+b") as f:
        f.seek(base + t["data_offsets"][0] + 3)
        top = f.read(1)[0]
        f.seek(base + t["data_offsets"][0] + 3)
        f.write(bytes([top ^ 0x80]))
    print(name)


def main(argv):
    if len(argv) >= 5 and argv[1] == "report":
        cmd_report(argv[2], argv[3], argv[4], argv[5:])
    elif len(argv) == 4 and argv[1] == "meta":
        print(metadata(argv[2]).get(argv[3], "<absent>"))
    elif len(argv) == 4 and argv[1] == "fate":
        print(json.loads(metadata(argv[2])["layers"]).get(argv[3], {}).get("action", "<absent>"))
    elif len(argv) == 4 and argv[1] == "flip":
        cmd_flip(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "patch":
        cmd_patch(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
