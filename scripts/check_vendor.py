#!/usr/bin/env python3
"""Proves that each vendored crate under vendor/ is the crates.io source plus
its patch file (vendor/<crate>.patch), nothing else.

    scripts/check_vendor.py           check every vendored crate
    scripts/check_vendor.py --write   rewrite the .patch files from vendor/

For each crate: the published .crate archive is taken from cargo's download
cache (~/.cargo/registry/cache), or fetched there by `cargo fetch` in a
throwaway project; its SHA-256 must equal the checksum pinned below (the one
the crates.io index publishes). The archive is unpacked, the paths the
vendored copy leaves out are removed, the patch is applied with `patch -p1`,
and the result must equal vendor/<crate> file for file, byte for byte,
except for the files dop adds (PATCHED.md). Exit status 1 on any difference.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Crate:
    def __init__(self, name, version, sha256, dropped, ours):
        self.name = name
        self.version = version
        # The crates.io index's `cksum` of the .crate archive.
        self.sha256 = sha256
        # Paths of the published crate the vendored copy leaves out.
        self.dropped = dropped
        # Files of the vendored copy that are dop's own, not part of the patch.
        self.ours = ours

    @property
    def dir(self):
        return ROOT / "vendor" / self.name

    @property
    def patch(self):
        return ROOT / "vendor" / f"{self.name}.patch"


CRATES = [
    Crate(
        "amqprs",
        "2.1.5",
        "b768f791c4e8b038dc883cb0f1b533a498a9e59a7ddb352ed2ea9cb0a728dbf4",
        # Its integration tests need a broker set up their way; with them go
        # the [[test]] entries of Cargo.toml (in the patch).
        dropped=[".cargo_vcs_info.json", "Cargo.lock", "Cargo.toml.orig", "tests"],
        ours=["PATCHED.md"],
    ),
    Crate(
        "diesel-async",
        "0.9.2",
        "dd39af30158d444884f166fe4c58f35dc40ad71ad017bb59408a3448526ff4bd",
        dropped=[],
        ours=["PATCHED.md"],
    ),
]


def cargo_home():
    return Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))


def find_archive(crate):
    name = f"{crate.name}-{crate.version}.crate"
    for cache in sorted((cargo_home() / "registry" / "cache").glob("*")):
        if (cache / name).is_file():
            return cache / name
    return None


def fetch_archive(crate, work):
    """Lets cargo download the archive into its cache (a registry client
    doing what it does for any dependency)."""
    proj = work / "fetch"
    proj.mkdir()
    (proj / "lib.rs").write_text("")
    (proj / "Cargo.toml").write_text(
        '[package]\nname = "dop-vendor-fetch"\nversion = "0.0.0"\nedition = "2021"\n'
        '[lib]\npath = "lib.rs"\n'
        f'[dependencies]\n{crate.name} = "={crate.version}"\n'
    )
    subprocess.run(["cargo", "fetch", "--quiet"], cwd=proj, check=True)
    shutil.rmtree(proj)
    return find_archive(crate)


def pristine(crate, work):
    """The published source minus the dropped paths, unpacked under `work`."""
    archive = find_archive(crate) or fetch_archive(crate, work)
    if archive is None:
        raise SystemExit(f"{crate.name} {crate.version}: no .crate archive found or fetched")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != crate.sha256:
        raise SystemExit(
            f"{crate.name} {crate.version}: {archive} has SHA-256 {digest}, "
            f"crates.io publishes {crate.sha256}"
        )
    out = work / "a"
    out.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    src = out / f"{crate.name}-{crate.version}"
    for rel in crate.dropped:
        p = src / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            raise SystemExit(f"{crate.name}: dropped path {rel} is not in the published crate")
    return src


def files(tree, skip=()):
    return {
        str(p.relative_to(tree))
        for p in tree.rglob("*")
        if p.is_file() and str(p.relative_to(tree)) not in skip
    }


def write_patch(crate, work):
    """`diff -ruN` of the pristine tree against vendor/, timestamps removed."""
    src = pristine(crate, work)
    a, b = work / "diff" / "a", work / "diff" / "b"
    shutil.copytree(src, a)
    shutil.copytree(crate.dir, b, ignore=shutil.ignore_patterns(*crate.ours))
    r = subprocess.run(
        ["diff", "-ruN", "a", "b"], cwd=work / "diff", capture_output=True, text=True
    )
    if r.returncode not in (0, 1):
        raise SystemExit(r.stderr)
    lines = []
    for line in r.stdout.splitlines(keepends=True):
        if line.startswith(("--- a/", "+++ b/")):
            line = line.split("\t")[0].rstrip("\n") + "\n"
        lines.append(line)
    crate.patch.write_text("".join(lines))
    print(f"wrote {crate.patch.relative_to(ROOT)}")


def check(crate, work):
    src = pristine(crate, work)
    if not crate.patch.is_file():
        return [f"{crate.patch.relative_to(ROOT)} is missing"]
    r = subprocess.run(
        ["patch", "-p1", "--batch", "--silent", "--no-backup-if-mismatch", "-d", str(src),
         "-i", str(crate.patch)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return [f"the patch does not apply: {r.stdout}{r.stderr}"]
    problems = []
    want, have = files(src), files(crate.dir, skip=crate.ours)
    for rel in sorted(want - have):
        problems.append(f"missing from vendor/{crate.name}: {rel}")
    for rel in sorted(have - want):
        problems.append(f"in vendor/{crate.name} but not in crates.io source + patch: {rel}")
    for rel in sorted(want & have):
        if (src / rel).read_bytes() != (crate.dir / rel).read_bytes():
            problems.append(f"differs from crates.io source + patch: vendor/{crate.name}/{rel}")
    for rel in crate.ours:
        if not (crate.dir / rel).is_file():
            problems.append(f"vendor/{crate.name}/{rel} is missing")
    return problems


def main():
    write = sys.argv[1:] == ["--write"]
    if sys.argv[1:] and not write:
        print(__doc__)
        return 2
    failed = False
    for crate in CRATES:
        with tempfile.TemporaryDirectory() as tmp:
            if write:
                write_patch(crate, Path(tmp))
                continue
            problems = check(crate, Path(tmp))
        if problems:
            failed = True
            print(f"FAIL vendor/{crate.name} ({crate.name} {crate.version})")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"ok   vendor/{crate.name} = {crate.name} {crate.version} + "
                  f"vendor/{crate.name}.patch")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
