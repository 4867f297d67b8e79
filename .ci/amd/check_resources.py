#!/usr/bin/env python3
"""Static resource check of AMD GPU kernels, read from built code objects (stdlib only).

Usage:
  check_resources.py [options] PATH...

Each PATH is a file or a directory (searched recursively for *.o, *.a, *.so*, *.hipfb, *.co,
*.hsaco). Accepted files:
  * host ELF objects / shared libraries holding a `.hip_fatbin` section (one or several
    concatenated offload bundles: a linked .so holds one bundle per HIP object),
  * ar archives of such objects,
  * raw offload bundles (.hipfb),
  * AMDGPU code objects (ELF, e_machine = EM_AMDGPU).

Bundles are split with clang-offload-bundler; every AMDGPU code object's metadata note is read
with `llvm-readelf --notes` (the AMDGPU metadata map printed as YAML). For each kernel it reports
static LDS (.group_segment_fixed_size), scratch (.private_segment_fixed_size), VGPRs, AGPRs,
SGPRs, spills, wave size and max flat workgroup size, one table per target.

Exit status: 0 when every kernel on every target has static LDS <= --max-lds (default 65536)
bytes, no scratch, no SGPR/VGPR spills and no dynamic stack; 1 when any kernel violates that;
2 on usage/tool errors, when no kernel at all was found, when a target in --expect-targets has
no kernels, or (unless --allow-target-mismatch) when the targets do not hold the same kernels.
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

BUNDLE_MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"
COMPRESSED_MAGIC = b"CCOB"
EM_AMDGPU = 0xE0
SCAN_SUFFIXES = (".o", ".a", ".so", ".hipfb", ".co", ".hsaco")

# Kernel-level metadata keys we read; all must be present for every kernel (format drift must
# fail loudly, never pass silently).
REQUIRED_KEYS = (
    ".name",
    ".group_segment_fixed_size",
    ".private_segment_fixed_size",
    ".sgpr_count",
    ".vgpr_count",
    ".sgpr_spill_count",
    ".vgpr_spill_count",
    ".wavefront_size",
    ".max_flat_workgroup_size",
)


class ToolError(Exception):
    pass


def find_tool(explicit, names):
    if explicit:
        if shutil.which(explicit) is None:
            raise ToolError(f"tool not found: {explicit}")
        return explicit
    for n in names:
        if shutil.which(n):
            return n
    raise ToolError("none of these tools found on PATH: " + ", ".join(names))


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise ToolError(
            f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.decode(errors='replace')}"
        )
    return p.stdout.decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# Containers: ar archives, host ELF sections
# ---------------------------------------------------------------------------------------------


def ar_members(data):
    """Yield (name, bytes) for each member of a System V / GNU ar archive."""
    pos = 8
    longnames = b""
    while pos + 60 <= len(data):
        hdr = data[pos : pos + 60]
        name = hdr[0:16].decode(errors="replace").rstrip()
        size = int(hdr[48:58].decode().strip() or 0)
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name == "//":
            longnames = body
            continue
        if name in ("/", "/SYM64/"):
            continue
        if name.startswith("/") and name[1:].isdigit():
            off = int(name[1:])
            end = longnames.find(b"/\n", off)
            name = longnames[off : end if end >= 0 else None].decode(errors="replace")
        elif name.startswith("#1/"):  # BSD long name stored in front of the body
            n = int(name[3:])
            name, body = body[:n].rstrip(b"\0").decode(errors="replace"), body[n:]
        yield name.rstrip("/"), body


def elf_machine(data):
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    endian = "<" if data[5] == 1 else ">"
    return struct.unpack_from(endian + "H", data, 18)[0]


def elf_section(data, wanted):
    """Return the bytes of section `wanted` of a 64-bit ELF file, or None."""
    if data[4] != 2:
        raise ToolError("only ELF64 host objects are supported")
    e = "<" if data[5] == 1 else ">"
    shoff = struct.unpack_from(e + "Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3A)
    if shoff == 0:
        return None
    if shnum == 0:  # extended numbering
        shnum = struct.unpack_from(e + "Q", data, shoff + 0x20)[0]
    if shstrndx == 0xFFFF:
        shstrndx = struct.unpack_from(e + "I", data, shoff + 0x28)[0]

    def sh(i):
        base = shoff + i * shentsize
        name, stype = struct.unpack_from(e + "II", data, base)
        offset, size = struct.unpack_from(e + "QQ", data, base + 0x18)
        return name, stype, offset, size

    _, _, str_off, str_size = sh(shstrndx)
    strtab = data[str_off : str_off + str_size]
    for i in range(shnum):
        name, stype, offset, size = sh(i)
        end = strtab.find(b"\0", name)
        if strtab[name:end].decode(errors="replace") == wanted:
            if stype == 8:  # SHT_NOBITS
                return b""
            return data[offset : offset + size]
    return None


def split_bundles(blob):
    """A .hip_fatbin section of a linked file holds several bundles back to back (each padded
    to its alignment). Return them as separate byte strings."""
    starts = []
    pos = 0
    while True:
        a = blob.find(BUNDLE_MAGIC, pos)
        c = blob.find(COMPRESSED_MAGIC, pos)
        cands = [x for x in (a, c) if x >= 0]
        if not cands:
            break
        nxt = min(cands)
        # The compressed magic is only 4 bytes; accept it only at an aligned bundle start.
        if nxt == c and nxt != a and (nxt % 8):
            pos = nxt + 1
            continue
        starts.append(nxt)
        pos = nxt + 4
    return [blob[s : (starts[i + 1] if i + 1 < len(starts) else len(blob))] for i, s in enumerate(starts)]


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------

KEY_RE = re.compile(r"^(?P<ind> *)(?P<dash>- )?(?P<key>\.[A-Za-z0-9_]+):[ \t]*(?P<val>.*)$")


def scalar(v):
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        v = v[1:-1]
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    if v in ("true", "false"):
        return v == "true"
    return v


def parse_amdgpu_notes(text):
    """Parse the AMDGPU metadata YAML printed by `llvm-readelf --notes`.
    Returns (target, [kernel dict]) with kernel-level scalar keys only."""
    target = None
    m = re.search(r"^amdhsa\.target:\s*(\S+)", text, re.M)
    if m:
        target = scalar(m.group(1))
    kernels = []
    in_kernels = False
    kernel_indent = None  # indent of the "- " that starts a kernel entry
    cur = None
    for line in text.splitlines():
        if re.match(r"^amdhsa\.kernels:", line):
            in_kernels = True
            continue
        if in_kernels and re.match(r"^[A-Za-z.]", line):  # next top-level key / end marker
            in_kernels = False
            continue
        if not in_kernels:
            continue
        m = KEY_RE.match(line)
        if not m:
            continue
        ind = len(m.group("ind"))
        if m.group("dash") and (kernel_indent is None or ind == kernel_indent):
            kernel_indent = ind
            cur = {}
            kernels.append(cur)
            ind += 2
        if cur is None or ind != kernel_indent + 2:
            continue  # nested (.args entries and the like)
        if m.group("val") == "":
            continue  # a nested block (.args:, .language_version:)
        cur[m.group("key")] = scalar(m.group("val"))
    return target, kernels


def gfx_of(target_string):
    # "amdgcn-amd-amdhsa--gfx90a" or "...--gfx942:sramecc+:xnack-" -> gfx90a / gfx942
    m = re.search(r"(gfx[0-9a-f]+)", target_string or "")
    return m.group(1) if m else str(target_string)


class Collector:
    def __init__(self, bundler, readelf, workdir, verbose):
        self.bundler, self.readelf, self.workdir, self.verbose = bundler, readelf, workdir, verbose
        self.rows = []
        self.count = 0

    def tmp(self, suffix):
        self.count += 1
        return os.path.join(self.workdir, f"f{self.count}{suffix}")

    def log(self, msg):
        if self.verbose:
            print(f"  [scan] {msg}", file=sys.stderr)

    def add_data(self, data, origin):
        if data[:8] == b"!<arch>\n":
            for name, body in ar_members(data):
                self.add_data(body, f"{origin}({name})")
            return
        if data[: len(BUNDLE_MAGIC)] == BUNDLE_MAGIC or data[:4] == COMPRESSED_MAGIC:
            self.add_bundle(data, origin)
            return
        mach = elf_machine(data)
        if mach is None:
            self.log(f"skip (not ELF/ar/bundle): {origin}")
            return
        if mach == EM_AMDGPU:
            self.add_code_object(data, origin, None)
            return
        sec = elf_section(data, ".hip_fatbin")
        if not sec:
            self.log(f"no .hip_fatbin: {origin}")
            return
        bundles = split_bundles(sec)
        if not bundles:
            raise ToolError(f"{origin}: .hip_fatbin holds no offload bundle")
        for i, b in enumerate(bundles):
            self.add_bundle(b, f"{origin}[bundle {i}]" if len(bundles) > 1 else origin)

    def add_bundle(self, data, origin):
        path = self.tmp(".hipfb")
        with open(path, "wb") as f:
            f.write(data)
        targets = [
            t.strip()
            for t in run([self.bundler, "--list", "--type=o", f"--input={path}"]).splitlines()
            if t.strip()
        ]
        dev = [t for t in targets if "amdgcn" in t]
        self.log(f"{origin}: bundle targets {targets}")
        for t in dev:
            out = self.tmp(".co")
            run([self.bundler, "--unbundle", "--type=o", f"--input={path}", f"--targets={t}", f"--output={out}"])
            with open(out, "rb") as f:
                co = f.read()
            if not co:
                continue
            self.add_code_object(co, origin, t)

    def add_code_object(self, data, origin, bundle_target):
        path = self.tmp(".co")
        with open(path, "wb") as f:
            f.write(data)
        text = run([self.readelf, "--notes", path])
        target, kernels = parse_amdgpu_notes(text)
        if target is None and bundle_target is None:
            raise ToolError(f"{origin}: code object without amdhsa.target metadata")
        gfx = gfx_of(target or bundle_target)
        if "amdhsa.kernels" not in text:
            self.log(f"{origin}: {gfx}: no kernels")
        for k in kernels:
            missing = [key for key in REQUIRED_KEYS if key not in k]
            if missing:
                raise ToolError(f"{origin}: {gfx}: kernel metadata lacks {missing}: {k}")
            k["target"] = gfx
            k["origin"] = origin
            self.rows.append(k)


def demangle(names, cxxfilt):
    if not cxxfilt or not names:
        return {n: n for n in names}
    p = subprocess.run([cxxfilt, "--no-params"], input="\n".join(names).encode(), stdout=subprocess.PIPE)
    out = p.stdout.decode(errors="replace").splitlines()
    if p.returncode != 0 or len(out) != len(names):
        return {n: n for n in names}
    return dict(zip(names, out))


def gather_paths(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, fs in os.walk(p):
                dirs.sort()
                for f in sorted(fs):
                    if f.endswith(SCAN_SUFFIXES) or re.search(r"\.so(\.\d+)*$", f):
                        files.append(os.path.join(root, f))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise ToolError(f"no such file or directory: {p}")
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--max-lds", type=int, default=65536, help="max static LDS bytes per kernel (default 65536)")
    ap.add_argument("--expect-targets", default="", help="comma/semicolon list, e.g. gfx90a,gfx942,gfx1100")
    ap.add_argument("--allow-target-mismatch", action="store_true", help="do not require the same kernels on every target")
    ap.add_argument("--bundler", default=None)
    ap.add_argument("--readelf", default=None)
    ap.add_argument("--markdown", default=None, help="also write the table(s) as Markdown to this file")
    ap.add_argument("--json", default=None, help="also write all rows as JSON to this file")
    ap.add_argument("--mangled", action="store_true", help="print mangled kernel names")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    try:
        bundler = find_tool(a.bundler, ["clang-offload-bundler-19", "clang-offload-bundler"])
        readelf = find_tool(a.readelf, ["llvm-readelf-19", "llvm-readelf"])
        try:
            cxxfilt = find_tool(None, ["llvm-cxxfilt-19", "llvm-cxxfilt"])
        except ToolError:
            cxxfilt = None
        files = gather_paths(a.paths)
        with tempfile.TemporaryDirectory(prefix="pkv-amdcheck-") as wd:
            col = Collector(bundler, readelf, wd, a.verbose)
            for f in files:
                with open(f, "rb") as fh:
                    col.add_data(fh.read(), os.path.relpath(f))
    except ToolError as e:
        print(f"check_resources: error: {e}", file=sys.stderr)
        return 2

    # One row per distinct (target, kernel, resources): the same code object reached through
    # an .o, its archive and the linked .so is reported once.
    seen = {}
    for r in col.rows:
        key = (r["target"], r[".name"], r[".group_segment_fixed_size"], r[".private_segment_fixed_size"],
               r[".vgpr_count"], r[".sgpr_count"], r[".vgpr_spill_count"], r[".sgpr_spill_count"])
        seen.setdefault(key, r)
    rows = list(seen.values())
    names = sorted({r[".name"] for r in rows})
    pretty = {n: n for n in names} if a.mangled else demangle(names, cxxfilt)
    pretty = {n: v.replace("(anonymous namespace)::", "") for n, v in pretty.items()}

    fails = []
    for r in rows:
        why = []
        if r[".group_segment_fixed_size"] > a.max_lds:
            why.append(f"static LDS {r['.group_segment_fixed_size']} > {a.max_lds}")
        if r[".private_segment_fixed_size"] > 0:
            why.append(f"scratch {r['.private_segment_fixed_size']} B")
        if r[".vgpr_spill_count"] > 0:
            why.append(f"{r['.vgpr_spill_count']} VGPR spills")
        if r[".sgpr_spill_count"] > 0:
            why.append(f"{r['.sgpr_spill_count']} SGPR spills")
        if r.get(".uses_dynamic_stack") is True:
            why.append("dynamic stack")
        r["fail"] = why
        if why:
            fails.append(r)

    def tkey(t):
        m = re.match(r"gfx([0-9a-f]+)", t)
        return (len(m.group(1)), m.group(1)) if m else (99, t)

    targets = sorted({r["target"] for r in rows}, key=tkey)
    cols = ["kernel", "target", "LDS B", "scratch B", "VGPR", "AGPR", "SGPR", "VGPR spill", "SGPR spill", "wave", "max WG", "status"]
    tables = {}
    for t in targets:
        trs = sorted((r for r in rows if r["target"] == t), key=lambda r: pretty[r[".name"]])
        tables[t] = [
            [pretty[r[".name"]], t, r[".group_segment_fixed_size"], r[".private_segment_fixed_size"], r[".vgpr_count"],
             r.get(".agpr_count", "-"), r[".sgpr_count"], r[".vgpr_spill_count"], r[".sgpr_spill_count"],
             r[".wavefront_size"], r[".max_flat_workgroup_size"], "FAIL: " + "; ".join(r["fail"]) if r["fail"] else "ok"]
            for r in trs
        ]

    for t in targets:
        data = [cols] + [[str(c) for c in row] for row in tables[t]]
        w = [max(len(row[i]) for row in data) for i in range(len(cols))]
        print(f"\n== {t}: {len(tables[t])} kernels ==")
        for j, row in enumerate(data):
            print("  ".join(c.ljust(w[i]) if i == 0 or i == len(cols) - 1 or i == 1 else c.rjust(w[i]) for i, c in enumerate(row)).rstrip())
            if j == 0:
                print("  ".join("-" * x for x in w))

    errors = []
    if not rows:
        errors.append("no AMDGPU kernels found in: " + " ".join(a.paths))
    expect = [t for t in re.split(r"[,;\s]+", a.expect_targets) if t]
    for t in expect:
        if t not in targets:
            errors.append(f"expected target {t} has no kernels")
    for t in targets:
        if expect and t not in expect:
            errors.append(f"unexpected target {t} in the code objects")
    if not a.allow_target_mismatch and len(targets) > 1:
        sets = {t: {r[".name"] for r in rows if r["target"] == t} for t in targets}
        ref = sets[targets[0]]
        for t in targets[1:]:
            if sets[t] != ref:
                diff = sorted(ref ^ sets[t])
                errors.append(f"targets {targets[0]} and {t} hold different kernels: {diff[:5]}")

    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n")
            for t in targets:
                for row in tables[t]:
                    f.write("| " + " | ".join(("`%s`" % c) if i == 0 else str(c) for i, c in enumerate(row)) + " |\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{k.lstrip("."): v for k, v in r.items()} for r in rows], f, indent=1, default=str)

    print(f"\nchecked {len(rows)} kernel code objects on {len(targets)} target(s) {targets} from {len(files)} file(s); "
          f"limits: static LDS <= {a.max_lds} B, no scratch, no spills")
    for e in errors:
        print(f"check_resources: error: {e}", file=sys.stderr)
    if fails:
        print(f"check_resources: FAIL: {len(fails)} kernel(s) over the limits:", file=sys.stderr)
        for r in fails:
            print(f"  {r['target']}  {pretty[r['.name']]}  ({r['origin']}): {'; '.join(r['fail'])}", file=sys.stderr)
        return 1
    if errors:
        return 2
    print("check_resources: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
