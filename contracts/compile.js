#!/usr/bin/env node
// Offline, deterministic Solidity build for Basement (solc-js from npm, standard-JSON, OpenZeppelin
// resolved from node_modules through the import callback; no network, no native solc).
//
//   node compile.js             compile src/ into artifacts/ (<Name>.json + manifest.json)
//   node compile.js --check     recompile into a temp dir; exit 1 naming every artifact that differs
//   node compile.js --out DIR   compile into DIR instead of artifacts/
//   --artifacts DIR             with --check: compare against DIR instead of artifacts/
//
// Only the contracts listed in CONTRACTS get artifacts: solc also emits bytecode for internal OZ
// libraries, which nothing deploys.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');

const ROOT = __dirname;
const NODE_MODULES = path.resolve(process.env.SOLC_NODE_MODULES || path.join(ROOT, 'node_modules'));
let ARTIFACTS = path.join(ROOT, 'artifacts');
const EVM_VERSION = 'cancun'; // py-evm tops out at Prague; solc 0.8.37 defaults to osaka
const OPTIMIZER = { enabled: true, runs: 200 };
const CONTRACTS = {
  SessionLog: 'src/SessionLog.sol',
  Multicall3: 'src/Multicall3.sol',
  AccessToken: 'src/AccessToken.sol',
  MembershipPass: 'src/MembershipPass.sol',
  Badges: 'src/Badges.sol',
  OwnedWallet: 'src/OwnedWallet.sol',
};

const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

function findImports(p) {
  for (const base of [NODE_MODULES, ROOT]) {
    const full = path.resolve(base, p);
    if (full.startsWith(base + path.sep) && fs.existsSync(full)) {
      return { contents: fs.readFileSync(full, 'utf8') };
    }
  }
  return { error: 'File not found: ' + p };
}

function compile() {
  const solc = require(path.join(NODE_MODULES, 'solc'));
  const sources = {};
  // Source keys are paths relative to contracts/, so the metadata hash in the bytecode does not
  // depend on where the repository is checked out.
  for (const src of [...new Set(Object.values(CONTRACTS))].sort()) {
    sources[src] = { content: fs.readFileSync(path.join(ROOT, src), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      optimizer: OPTIMIZER,
      evmVersion: EVM_VERSION,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  let fatal = false;
  for (const e of out.errors || []) {
    console.error(e.formattedMessage);
    if (e.severity === 'error') fatal = true;
  }
  if (fatal) process.exit(1);
  const files = {};
  const manifest = { compiler: solc.version(), evmVersion: EVM_VERSION, optimizer: OPTIMIZER, contracts: {} };
  for (const [name, src] of Object.entries(CONTRACTS)) {
    const c = (out.contracts[src] || {})[name];
    if (!c || !c.evm.bytecode.object) {
      console.error(`no bytecode for ${name} in ${src}`);
      process.exit(1);
    }
    const art = {
      contractName: name,
      sourceName: src,
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(art, null, 2) + '\n';
    files[name + '.json'] = text;
    manifest.contracts[name] = {
      source: src,
      sourceSha256: sha256(sources[src].content),
      artifactSha256: sha256(text),
      bytecodeSha256: sha256(art.bytecode),
    };
  }
  files['manifest.json'] = JSON.stringify(manifest, null, 2) + '\n';
  return files;
}

function write(dir, files) {
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
}

function check(files) {
  // Compile into a temp dir too, so the check exercises exactly the same write path as a build.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'basement-artifacts-'));
  try {
    write(tmp, files);
    const problems = [];
    const committed = fs.existsSync(ARTIFACTS) ? fs.readdirSync(ARTIFACTS).filter((f) => f.endsWith('.json')) : [];
    for (const f of Object.keys(files).sort()) {
      const have = path.join(ARTIFACTS, f);
      if (!fs.existsSync(have)) problems.push(`missing artifact: ${f}`);
      else if (!fs.readFileSync(have).equals(fs.readFileSync(path.join(tmp, f)))) {
        problems.push(`artifact differs from sources: ${f}`);
      }
    }
    for (const f of committed.sort()) if (!(f in files)) problems.push(`stale artifact (no source): ${f}`);
    return problems;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function main(argv) {
  const a = argv.indexOf('--artifacts');
  if (a >= 0) ARTIFACTS = path.resolve(argv[a + 1]);
  const files = compile();
  if (argv.includes('--check')) {
    const problems = check(files);
    for (const p of problems) console.error(`${p} (in ${ARTIFACTS})`);
    if (problems.length) {
      console.error('run `make contracts` (node contracts/compile.js) and commit contracts/artifacts/');
      process.exit(1);
    }
    console.log(`artifacts up to date (${Object.keys(CONTRACTS).length} contracts)`);
    return;
  }
  const i = argv.indexOf('--out');
  const dir = i >= 0 ? path.resolve(argv[i + 1]) : ARTIFACTS;
  write(dir, files);
  console.log(`compiled ${Object.keys(CONTRACTS).join(', ')} -> ${path.relative(process.cwd(), dir) || '.'}`);
}

main(process.argv.slice(2));
