// `npm start` runs this first: it compiles the TypeScript only when a source is newer than the last build, so a
// restart does not pay several seconds of tsc for nothing. `npm run build` always compiles (incrementally).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildInfo = path.join(root, 'dist', '.tsbuildinfo');
// tsc leaves its build info untouched when nothing changed, so the time of the last build is kept apart.
const stamp = path.join(root, 'dist', '.build-stamp');
const sources = ['src', 'models', 'bots', 'webhooks', 'tsconfig.json', 'package-lock.json'];

function newestChange(entry) {
  let stat;
  try {
    stat = statSync(entry);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs; // a deleted file changes its folder's time
  for (const name of readdirSync(entry)) newest = Math.max(newest, newestChange(path.join(entry, name)));
  return newest;
}

let built = 0;
try {
  built = statSync(stamp).mtimeMs;
} catch {
  // never built
}
const changed = Math.max(...sources.map((source) => newestChange(path.join(root, source))));
if (built > 0 && changed <= built) process.exit(0);

process.stderr.write(built > 0 ? 'sources changed: compiling the TypeScript\n' : 'compiling the TypeScript (once)\n');
const startedAt = new Date();
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', buildInfo], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status === 0) {
  // Dated from before the compile, so a file saved during it still counts as changed next time.
  writeFileSync(stamp, '');
  utimesSync(stamp, startedAt, startedAt);
}
process.exit(result.status ?? 1);
