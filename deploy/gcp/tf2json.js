// Parse Terraform files with HashiCorp's HCL parser (@cdktf/hcl2json, a
// WebAssembly build) and print {"<file>": <JSON tree>, ...} on stdout.
// Exit 1 naming file:line:column when a file is not valid HCL. Used by
// tests/e2e/test_deploy.py (Terraform itself is not installed here).
"use strict";
const fs = require("fs");
const path = require("path");
const { parse } = require("@cdktf/hcl2json");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tf2json.js FILE.tf...");
    process.exit(2);
  }
  const out = {};
  for (const f of files) {
    const text = fs.readFileSync(f, "utf8");
    try {
      out[path.basename(f)] = await parse(path.basename(f), text);
    } catch (e) {
      console.error(`${f}: ${e && e.message ? e.message : e}`);
      process.exit(1);
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main(process.argv.slice(2));
