#!/usr/bin/env node
// Canonical HCL formatting check without the terraform binary.
//
//   NODE_PATH=<dir with @cdktf/hcl-tools> node scripts/check_hcl_format.js FILE|DIR...
//
// @cdktf/hcl-tools runs hclwrite.Format from hashicorp/hcl (compiled to
// WebAssembly): the same formatter `terraform fmt` applies (indentation,
// alignment of "=" in a run of attributes, spacing). `terraform fmt` also
// unwraps "${x}" into x; scripts/check_terraform.py interpolation checks that.
// Directories are searched for *.tf, *.tfvars, *.tfvars.example and
// *.tftest.hcl. Prints the first differing lines of each file that is not
// formatted; exits 1 when any is not.
"use strict";

const fs = require("fs");
const path = require("path");
const { format } = require("@cdktf/hcl-tools");

const HCL = /\.(tf|tfvars|tftest\.hcl)$|\.tfvars\.example$/;

function collect(p, out) {
  const st = fs.statSync(p);
  if (st.isDirectory()) {
    for (const name of fs.readdirSync(p).sort()) {
      if (name.startsWith(".")) continue; // .terraform/
      collect(path.join(p, name), out);
    }
  } else if (HCL.test(p)) {
    out.push(p);
  }
}

function firstDiff(a, b) {
  const al = a.split("\n");
  const bl = b.split("\n");
  const lines = [];
  for (let i = 0; i < Math.max(al.length, bl.length) && lines.length < 6; i++) {
    if (al[i] !== bl[i]) {
      lines.push(`    line ${i + 1}:`);
      lines.push(`      is:   ${JSON.stringify(al[i] ?? "<end of file>")}`);
      lines.push(`      want: ${JSON.stringify(bl[i] ?? "<end of file>")}`);
    }
  }
  return lines.join("\n");
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length === 0) {
    console.error("usage: check_hcl_format.js FILE|DIR...");
    process.exit(2);
  }
  const files = [];
  for (const a of args) collect(a, files);
  let bad = 0;
  for (const f of files) {
    const src = fs.readFileSync(f, "utf8");
    let want;
    try {
      want = await format(src);
    } catch (e) {
      console.log(`  ${f}: hclwrite could not format it: ${e}`);
      bad++;
      continue;
    }
    if (want !== src) {
      console.log(`  ${f}: not canonically formatted (terraform fmt would change it)`);
      console.log(firstDiff(src, want));
      bad++;
    }
  }
  console.log(`${files.length} HCL files, ${bad} not formatted`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
