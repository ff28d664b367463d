// tools/package/funcfiles.mjs — which files `func azure functionapp publish` uploads.
//
// Owns the file selection of Azure Functions Core Tools (FileSystemHelpers.GetLocalFiles and
// its .funcignore parser, shared/reference/azure-hosting.md §3), so that dist/enviromon.zip
// holds exactly what Core Tools would upload from the repository root:
//   - every file under the app root, walked through symbolic links, except directories named
//     .git or .vscode and files named .funcignore, .gitignore, local.settings.json or
//     project.lock.json, at any depth (names compared case-insensitively);
//   - minus the paths (relative, '/'-separated) that .funcignore denies. Core Tools' parser is
//     not git's: every pattern is anchored at the app root and matches a path PREFIX that ends
//     at a word boundary ("build" denies build/x and build.log; "*.o" only top-level .o files;
//     "node_modules/" does NOT deny node_modules/.bin/x, as no word boundary follows the '/');
//     a "!" pattern wins wherever it stands. check-package compares the result with git's own
//     reading of .funcignore, so the file is kept to patterns that both read alike.
//
// CLI: node tools/package/funcfiles.mjs [APP_DIR]  → the uploaded paths, sorted, one a line.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ALWAYS_SKIPPED_DIRS = ['.git', '.vscode'];
const ALWAYS_SKIPPED_FILES = ['.funcignore', '.gitignore', 'local.settings.json', 'project.lock.json'];

/** One .funcignore pattern as Core Tools turns it into a regular-expression alternative. */
function patternSource(p) {
  return p.replace(/[-[\]/{}()+?.\\^$|]/g, '\\$&').replaceAll('**', '(.+)').replaceAll('*', '([^\\/]+)');
}

/** A matcher for .funcignore text: {accepts(relPath), denies(relPath)}. */
export function funcignoreMatcher(text) {
  const pos = [];
  const neg = [];
  for (let line of text.split('\n')) {
    line = line.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negative = line.startsWith('!');
    if (negative) line = line.slice(1);
    if (line.startsWith('/')) line = line.slice(1);
    (negative ? neg : pos).push(patternSource(line));
  }
  const compile = (alts) => (alts.length ? new RegExp(`^((${alts.join(')|(')}))\\b`) : /$^/);
  const p = compile(pos);
  const n = compile(neg);
  const accepts = (rel) => n.test(rel) || !p.test(rel);
  return { accepts, denies: (rel) => !accepts(rel) };
}

/** Every file Core Tools would consider under dir, as '/'-separated relative paths. */
export function walkAppFiles(dir) {
  const out = [];
  const lower = (a) => a.map((s) => s.toLowerCase());
  const skipDirs = lower(ALWAYS_SKIPPED_DIRS);
  const skipFiles = lower(ALWAYS_SKIPPED_FILES);
  const walk = (abs, rel) => {
    const entries = fs.readdirSync(abs, { withFileTypes: true });
    const isDir = (e) => e.isDirectory() || (e.isSymbolicLink() && fs.statSync(path.join(abs, e.name), { throwIfNoEntry: false })?.isDirectory());
    for (const e of entries) {
      if (!isDir(e) && !skipFiles.includes(e.name.toLowerCase())) out.push(rel + e.name);
    }
    for (const e of entries) {
      if (isDir(e) && !skipDirs.includes(e.name.toLowerCase())) walk(path.join(abs, e.name), `${rel}${e.name}/`);
    }
  };
  walk(dir, '');
  return out;
}

/** The files `func azure functionapp publish` would upload from dir, sorted. */
export function publishedFiles(dir) {
  const ignorePath = path.join(dir, '.funcignore');
  const m = funcignoreMatcher(fs.existsSync(ignorePath) ? fs.readFileSync(ignorePath, 'utf8') : '');
  return walkAppFiles(dir).filter((f) => m.accepts(f)).sort();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  for (const f of publishedFiles(path.resolve(process.argv[2] ?? '.'))) console.log(f);
}
