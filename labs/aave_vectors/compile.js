// Compile Solidity sources with npm solc (standard JSON) into out/<Contract>.json.
// usage: node compile.js <outdir> <root-dir> <file.sol>...   (paths relative to root-dir)
// Imports: 'openzeppelin-contracts/...' -> node_modules/@openzeppelin/contracts/...,
// '@openzeppelin/...' -> node_modules, 'solidity-utils/...' -> solidity-utils/src, else relative to root.
const fs = require('fs'), path = require('path'), solc = require(process.env.SOLC || 'solc');
const [outdir, root, ...files] = process.argv.slice(2);
const here = __dirname;
function resolve(p) {
  const cands = [];
  if (p.startsWith('openzeppelin-contracts/')) cands.push(path.join(here, 'node_modules/@openzeppelin/contracts', p.slice('openzeppelin-contracts/'.length).replace(/^contracts\//, '')));
  if (p.startsWith('@')) cands.push(path.join(here, 'node_modules', p), path.join(root, 'node_modules', p));
  if (p.startsWith('solidity-utils/')) cands.push(path.join(here, 'solidity-utils/src', p.slice(15)));
  cands.push(path.join(root, p));
  for (const c of cands) if (fs.existsSync(c)) return c;
  return null;
}
const sources = {};
for (const f of files) sources[f] = { content: fs.readFileSync(path.join(root, f), 'utf8') };
const input = { language: 'Solidity', sources, settings: {
  optimizer: { enabled: true, runs: 200 }, evmVersion: process.env.EVM || 'shanghai',
  metadata: { bytecodeHash: 'none' },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.bytecode.linkReferences', 'evm.deployedBytecode.object', 'evm.deployedBytecode.linkReferences'] } } } };
const t0 = Date.now();
const out = JSON.parse(solc.compile(JSON.stringify(input), { import: (p) => { const r = resolve(p); return r ? { contents: fs.readFileSync(r, 'utf8') } : { error: 'not found: ' + p }; } }));
const errs = (out.errors || []).filter(e => e.severity === 'error');
if (errs.length) { for (const e of errs) console.error(e.formattedMessage); process.exit(1); }
fs.mkdirSync(outdir, { recursive: true });
let n = 0;
for (const [src, cs] of Object.entries(out.contracts)) for (const [name, c] of Object.entries(cs)) {
  if (!c.evm.bytecode.object) continue; // interfaces, abstract
  fs.writeFileSync(path.join(outdir, name + '.json'), JSON.stringify({ contractName: name, sourceName: src, abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object, deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    linkReferences: c.evm.bytecode.linkReferences, deployedLinkReferences: c.evm.deployedBytecode.linkReferences }));
  n++;
}
console.log(`solc ${solc.version()}: ${n} contracts in ${(Date.now() - t0) / 1000}s -> ${outdir}`);
