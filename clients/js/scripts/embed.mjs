// Copies the compiled package (dist/*.js) to src/dashboard/client/, where the server
// embeds it (src/dashboard.rs) and the dashboard imports it as ES modules from
// /client/. The copies are committed, so `cargo build` needs no npm; `--check`
// compiles the TypeScript afresh into a temporary directory and fails if the committed
// copies differ from it (scripts/test runs it).
//
//   node scripts/embed.mjs          compile into dist/ (emptied first) and copy (`npm run build`)
//   node scripts/embed.mjs --check  compile to a temp dir and compare

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const target = path.resolve(pkg, '..', '..', 'src', 'dashboard', 'client');
const HEADER = '// Generated from clients/js/src by `npm run build` in clients/js: do not edit.\n';

const tsc = path.join(pkg, 'node_modules', 'typescript', 'bin', 'tsc');

function compile(outDir, declaration) {
  const args = [tsc, '-p', path.join(pkg, 'tsconfig.json'), '--outDir', outDir, '--declaration', String(declaration)];
  execFileSync(process.execPath, args, { stdio: 'inherit' });
}

function compiled(dir) {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .sort();
}

if (process.argv.includes('--check')) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tickcast-client-'));
  try {
    compile(out, false);
    const want = compiled(out);
    const have = fs.existsSync(target) ? compiled(target) : [];
    const stale = [];
    for (const f of new Set([...want, ...have])) {
      const a = want.includes(f) ? HEADER + fs.readFileSync(path.join(out, f), 'utf8') : null;
      const b = have.includes(f) ? fs.readFileSync(path.join(target, f), 'utf8') : null;
      if (a !== b) stale.push(f);
    }
    if (stale.length > 0) {
      console.error(
        `src/dashboard/client is not the build of clients/js/src (${stale.join(', ')} differ): ` +
          'run `npm run build` in clients/js and commit src/dashboard/client',
      );
      process.exit(1);
    }
    console.log(`src/dashboard/client matches clients/js/src (${want.length} files)`);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
} else {
  const dist = path.join(pkg, 'dist');
  fs.rmSync(dist, { recursive: true, force: true });
  compile(dist, true);
  fs.mkdirSync(target, { recursive: true });
  for (const f of compiled(target)) fs.rmSync(path.join(target, f));
  for (const f of compiled(dist)) {
    fs.writeFileSync(path.join(target, f), HEADER + fs.readFileSync(path.join(dist, f), 'utf8'));
  }
  console.log(`copied ${compiled(dist).length} modules to ${path.relative(process.cwd(), target) || target}`);
}
