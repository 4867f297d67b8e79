#!/usr/bin/env python3
"""Collect `ptxas -v` (nvcc -Xptxas -v) reports from build logs, print a per-function table and
fail on register spills (stdlib only).

Usage: ptxas_report.py [--fail-on-stack] [--markdown FILE] LOG...

Understands raw nvcc output and cargo's `-vv` build-script echo (`[pagedkv 0.1.0] ptxas info ...`),
as well as cargo's saved build-script `output`/`stderr` files. Exit status: 0 when no function has
spill stores or loads; 1 when any does (or, with --fail-on-stack, any has a stack frame);
2 when the logs hold no ptxas report at all (so `-Xptxas -v` was not in effect and nothing was
proven).
"""

import argparse
import re
import sys

PREFIX = re.compile(r"^(?:\[[^\]]+\]\s+)?(?:cargo:warning=)?")
COMPILING = re.compile(r"ptxas info\s*:\s*Compiling entry function '([^']+)' for '([^']+)'")
PROPS = re.compile(r"ptxas info\s*:\s*Function properties for (\S+)")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"ptxas info\s*:\s*Used (\d+) registers(.*)")
SMEM = re.compile(r"(\d+) bytes smem")
CMEM = re.compile(r"(\d+) bytes cmem\[0\]")
BARS = re.compile(r"used (\d+) barriers")


def parse(lines):
    funcs = {}  # (name, arch) -> dict
    arch = "?"
    entry = None  # (name, arch) of the entry being compiled
    props_for = None
    for raw in lines:
        line = PREFIX.sub("", raw.rstrip("\n")).strip()
        m = COMPILING.search(line)
        if m:
            arch = m.group(2)
            entry = (m.group(1), arch)
            funcs.setdefault(entry, {"name": m.group(1), "arch": arch, "entry": True})
            continue
        m = PROPS.search(line)
        if m:
            props_for = (m.group(1), arch)
            f = funcs.setdefault(props_for, {"name": m.group(1), "arch": arch, "entry": False})
            continue
        m = FRAME.search(line)
        if m and props_for:
            f = funcs[props_for]
            f["stack"], f["spill_st"], f["spill_ld"] = (int(x) for x in m.groups())
            continue
        m = USED.search(line)
        if m and entry:
            f = funcs[entry]
            f["regs"] = int(m.group(1))
            rest = m.group(2)
            s, c, b = SMEM.search(rest), CMEM.search(rest), BARS.search(rest)
            f["smem"] = int(s.group(1)) if s else 0
            f["cmem0"] = int(c.group(1)) if c else 0
            f["bars"] = int(b.group(1)) if b else 0
    return list(funcs.values())


def demangle(names):
    import shutil
    import subprocess

    for tool in ("llvm-cxxfilt-19", "llvm-cxxfilt", "c++filt"):
        if shutil.which(tool):
            args = [tool] + (["--no-params"] if "llvm" in tool else ["-p"])
            p = subprocess.run(args, input="\n".join(names).encode(), stdout=subprocess.PIPE)
            out = p.stdout.decode(errors="replace").splitlines()
            if p.returncode == 0 and len(out) == len(names):
                return dict(zip(names, out))
    return {n: n for n in names}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--fail-on-stack", action="store_true")
    ap.add_argument("--markdown", default=None)
    a = ap.parse_args()
    lines = []
    for p in a.logs:
        with open(p, errors="replace") as f:
            lines.extend(f.readlines())
    funcs = parse(lines)
    if not funcs:
        print("ptxas_report: error: no ptxas report found (is -Xptxas -v passed?) in: " + " ".join(a.logs), file=sys.stderr)
        return 2
    pretty = demangle(sorted({f["name"] for f in funcs}))
    pretty = {n: v.replace("(anonymous namespace)::", "") for n, v in pretty.items()}
    cols = ["function", "arch", "kind", "regs", "smem B", "stack B", "spill st B", "spill ld B", "barriers", "status"]
    rows, bad = [], []
    for f in sorted(funcs, key=lambda f: (f["arch"], not f["entry"], pretty[f["name"]])):
        why = []
        if f.get("spill_st", 0) or f.get("spill_ld", 0):
            why.append(f"spills {f.get('spill_st', 0)}/{f.get('spill_ld', 0)} B")
        if a.fail_on_stack and f.get("stack", 0):
            why.append(f"stack frame {f['stack']} B")
        if "stack" not in f:
            why.append("no 'Function properties' line")
        if why:
            bad.append((f, why))
        warn = " (stack frame)" if f.get("stack", 0) and not why else ""
        rows.append([pretty[f["name"]], f["arch"], "kernel" if f["entry"] else "device fn",
                     f.get("regs", "-"), f.get("smem", "-"), f.get("stack", "-"), f.get("spill_st", "-"),
                     f.get("spill_ld", "-"), f.get("bars", "-"), ("FAIL: " + "; ".join(why)) if why else "ok" + warn])
    data = [cols] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in data) for i in range(len(cols))]
    for j, r in enumerate(data):
        print("  ".join(c.ljust(w[i]) if i in (0, 1, 2, len(cols) - 1) else c.rjust(w[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            print("  ".join("-" * x for x in w))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n")
            for r in rows:
                f.write("| " + " | ".join(("`%s`" % c) if i == 0 else str(c) for i, c in enumerate(r)) + " |\n")
    n_k = sum(1 for f in funcs if f["entry"])
    print(f"\nptxas report: {n_k} kernel(s), {len(funcs) - n_k} non-inlined device function(s)")
    if bad:
        print(f"ptxas_report: FAIL: {len(bad)} function(s):", file=sys.stderr)
        for f, why in bad:
            print(f"  {f['arch']}  {pretty[f['name']]}: {'; '.join(why)}", file=sys.stderr)
        return 1
    print("ptxas_report: OK (no spills)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
