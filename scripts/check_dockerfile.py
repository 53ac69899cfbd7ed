#!/usr/bin/env python3
"""Project rules for the Dockerfile that hadolint does not know.

- the builder stage's build command is exactly CI's `cargo build --release
  --locked`, and every `cargo build` in the file is that command;
- a dependency layer (Cargo.toml and Cargo.lock copied, built before src/);
- migrations/ copied before the real build (they are embedded at compile time);
- every crate Cargo.toml patches in from a path (vendor/amqprs) copied before
  the first build, or `--locked` fails to resolve it;
- every file a COPY takes from the build context is in it: tracked files
  under each source path that .dockerignore does not exclude (a COPY whose
  source is all excluded fails the build);
- runtime on debian:bookworm-slim, non-root USER, EXPOSE 8081 8082 8083,
  HEALTHCHECK on /health at $HEALTHCHECK_PORT, ENTRYPOINT ["dop"],
  CMD ["serve", "--role", "all"].

Usage: scripts/check_dockerfile.py [Dockerfile]. Exits 1 on any problem.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CI_BUILD = "cargo build --release --locked"


def instructions(text: str):
    """(line number, INSTRUCTION, arguments) with continuations joined."""
    out = []
    buf, start = "", 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buf:
            start = lineno
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes `path` (relative, '/'-separated): the
    last pattern that matches the path or one of its parent directories
    wins; `!` re-includes. Docker's rules for the patterns this repository
    uses (names, directories, `*`, `**/`)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for raw in patterns:
        neg = raw.startswith("!")
        pat = raw[1:] if neg else raw
        pat = pat.strip("/")
        alts = [pat] + ([pat[3:]] if pat.startswith("**/") else [])
        if any(fnmatch.fnmatchcase(p, a.replace("**/", "*/")) for p in prefixes for a in alts):
            verdict = not neg
    return verdict


def context_problems(ins) -> list[str]:
    """COPY sources (not --from) with no file left after .dockerignore."""
    ignore = REPO / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore.read_text().splitlines() if ignore.exists() else [])
        if line.strip() and not line.strip().startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    problems = []
    for ln, word, args in ins:
        if word != "COPY" or "--from" in args:
            continue
        for src in args.split()[:-1]:
            src = src.strip("./") if src not in (".", "./") else ""
            files = [f for f in tracked if not src or f == src or f.startswith(src + "/")]
            if not [f for f in files if not ignored(f, patterns)]:
                problems.append(f"line {ln}: COPY {src or '.'}: nothing of it is in the build context (.dockerignore)")
    return problems


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "Dockerfile"
    ins = instructions(path.read_text())
    problems = []

    froms = [(i, args) for i, (_, word, args) in enumerate(ins) if word == "FROM"]
    if len(froms) < 2:
        problems.append("want a multi-stage build (builder + runtime)")
    else:
        if not re.match(r"rust:1-bookworm\s+AS\s+\w+", froms[0][1], re.I):
            problems.append(f"builder must be FROM rust:1-bookworm AS <name>, is {froms[0][1]!r}")
        if not froms[-1][1].split()[0] == "debian:bookworm-slim":
            problems.append(f"runtime must be FROM debian:bookworm-slim, is {froms[-1][1]!r}")
    runtime_start = froms[-1][0] if froms else 0
    builder = ins[: runtime_start]
    runtime = ins[runtime_start:]

    builds = [(ln, args) for ln, word, args in ins if word == "RUN" and "cargo build" in args]
    if not builds:
        problems.append(f"no RUN instruction runs `{CI_BUILD}`")
    for ln, args in builds:
        for cmd in re.findall(r"cargo build[^&;|]*", args):
            if cmd.strip() != CI_BUILD:
                problems.append(f"line {ln}: `{cmd.strip()}` is not CI's build command `{CI_BUILD}`")
    if len(builds) < 2:
        problems.append("want a cached dependency layer: one cargo build on a dummy main before the real one")

    def first(word, pred=lambda a: True, seq=builder):
        for idx, (ln, w, args) in enumerate(seq):
            if w == word and pred(args):
                return idx
        return None

    manifest = first("COPY", lambda a: "Cargo.toml" in a and "Cargo.lock" in a)
    src = first("COPY", lambda a: a.split()[0].rstrip("/") in ("src", "./src"))
    migrations = first("COPY", lambda a: a.split()[0].rstrip("/") in ("migrations", "./migrations"))
    build_idx = [i for i, (ln, w, a) in enumerate(builder) if w == "RUN" and "cargo build" in a]
    if manifest is None or src is None:
        problems.append("builder must COPY Cargo.toml Cargo.lock, then src")
    elif build_idx and not (manifest < build_idx[0] < src < build_idx[-1]):
        problems.append("order must be: COPY Cargo.toml Cargo.lock, cargo build (dummy), COPY src, cargo build")
    if migrations is None:
        problems.append("builder must COPY migrations (embedded at compile time)")
    elif build_idx and migrations > build_idx[-1]:
        problems.append("migrations must be copied before the real cargo build")

    manifest_toml = tomllib.loads((REPO / "Cargo.toml").read_text())
    for registry, crates in manifest_toml.get("patch", {}).items():
        for name, spec in crates.items():
            vendored = spec.get("path") if isinstance(spec, dict) else None
            if not vendored:
                continue
            top = Path(vendored).parts[0]
            copied = first("COPY", lambda a, top=top: a.split()[0].strip("./").split("/")[0] == top)
            if copied is None or (build_idx and copied > build_idx[0]):
                problems.append(
                    f"{vendored} ([patch.{registry}] {name}) must be copied before the first cargo build"
                )

    problems.extend(context_problems(ins))

    users = [a for _, w, a in runtime if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("runtime must switch to a non-root USER")
    if not any(w == "RUN" and "useradd" in a and re.search(r"\bdop\b", a) for _, w, a in runtime):
        problems.append("runtime must create the user dop")
    exposed = set()
    for _, w, a in runtime:
        if w == "EXPOSE":
            exposed.update(p.split("/")[0] for p in a.split())
    if not {"8081", "8082", "8083"} <= exposed:
        problems.append(f"EXPOSE must list 8081 8082 8083, lists {sorted(exposed)}")
    hc = [a for _, w, a in runtime if w == "HEALTHCHECK"]
    if not hc or "/health" not in hc[-1] or "HEALTHCHECK_PORT" not in hc[-1]:
        problems.append("HEALTHCHECK must probe /health on ${HEALTHCHECK_PORT}")
    if not any(w == "ENV" and re.search(r"HEALTHCHECK_PORT=8081\b", a) for _, w, a in runtime):
        problems.append("ENV HEALTHCHECK_PORT=8081 (the default the HEALTHCHECK uses)")

    def exec_form(word):
        vals = [a for _, w, a in runtime if w == word]
        if not vals:
            return None
        try:
            return json.loads(vals[-1])
        except ValueError:
            return vals[-1]

    if exec_form("ENTRYPOINT") != ["dop"]:
        problems.append(f'ENTRYPOINT must be ["dop"], is {exec_form("ENTRYPOINT")!r}')
    if exec_form("CMD") != ["serve", "--role", "all"]:
        problems.append(f'CMD must be ["serve", "--role", "all"], is {exec_form("CMD")!r}')

    for p in problems:
        print(f"  {p}")
    print(f"{path}: {len(ins)} instructions, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
