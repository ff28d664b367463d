// dist/enviromon.zip as `make package` left it (run by `make check-package`): exactly the
// files `func azure functionapp publish` would upload from the repository root (Core Tools'
// reading of .funcignore, checked against git's reading of the same file), the handler stored
// 0755 under exactly host.json's defaultExecutablePath (zipinfo), nothing else executable,
// no local.settings.json, and a handler that needs glibc <= 2.31 and nothing but libc6.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../js/lib/handler.mjs';
import { publishedFiles, funcignoreMatcher, walkAppFiles } from '../../tools/package/funcfiles.mjs';

const ZIP = path.join(repoRoot, 'dist', 'enviromon.zip');
const EXE = JSON.parse(fs.readFileSync(path.join(repoRoot, 'host.json'), 'utf8')).customHandler.description.defaultExecutablePath;
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });

/** zipinfo's long listing: [{mode, system, name}] (names without spaces, as ours are). */
function zipEntries(zip) {
  return run('zipinfo', [zip]).split('\n')
    .filter((l) => /^[-dl][rwxsStT-]{9}\s/.test(l))
    .map((l) => { const f = l.trim().split(/\s+/); return { mode: f[0], system: f[2], name: f.slice(8).join(' ') }; });
}

/** What git's own gitignore matching makes of ignoreFile over dir: every file on disk, tracked
 *  or not, that it does not exclude, less Core Tools' always-skipped names. */
function gitPublished(dir, ignoreFile) {
  const git = (...a) => run('git', ['-C', dir, ...a, '-z']).split('\0').filter(Boolean);
  const excluded = new Set(git('ls-files', '-c', '-i', `--exclude-from=${ignoreFile}`));
  const files = [...git('ls-files', '-c').filter((f) => !excluded.has(f)), ...git('ls-files', '-o', `--exclude-from=${ignoreFile}`)];
  const skipped = /(^|\/)(\.funcignore|\.gitignore|local\.settings\.json|project\.lock\.json)$|(^|\/)\.vscode\//i;
  return [...new Set(files)].filter((f) => !skipped.test(f) && fs.existsSync(path.join(dir, f))).sort();
}

test('handler is stored 0755 under exactly defaultExecutablePath, every other entry 0644, all Unix', () => {
  assert.doesNotMatch(EXE, /^\.?\/|\\/, 'defaultExecutablePath must be the plain zip path');
  const entries = zipEntries(ZIP);
  assert.ok(entries.length > 0);
  const exe = entries.filter((e) => e.name === EXE);
  assert.equal(exe.length, 1, `one entry named ${EXE}`);
  assert.equal(exe[0].mode, '-rwxr-xr-x');
  for (const e of entries) {
    assert.equal(e.system, 'unx', `${e.name} made on Unix (its mode applies)`);
    if (e.name !== EXE) assert.equal(e.mode, '-rw-r--r--', e.name);
  }
  const bytes = execFileSync('unzip', ['-p', ZIP, EXE], { maxBuffer: 64 << 20 });
  assert.ok(bytes.equals(fs.readFileSync(path.join(repoRoot, 'build', 'portable', 'handler'))), 'the portable build, not ./handler');
});

test('the zip holds exactly what func would upload from the repository root, and git reads .funcignore alike', () => {
  const names = zipEntries(ZIP).map((e) => e.name).sort();
  const core = [...new Set([...publishedFiles(repoRoot), EXE])].sort();
  assert.deepEqual(names, core);
  const git = [...new Set([...gitPublished(repoRoot, path.join(repoRoot, '.funcignore')), EXE])].sort();
  assert.deepEqual(core, git, 'Core Tools and git read .funcignore differently for these files');
  // And nothing beyond the app itself: host.json, the executable, the function folders.
  const fnDirs = fs.readdirSync(repoRoot).filter((d) => fs.existsSync(path.join(repoRoot, d, 'function.json')));
  assert.deepEqual(names, ['host.json', EXE, ...fnDirs.map((d) => `${d}/function.json`)].sort());
  assert.ok(!names.some((n) => /local\.settings\.json$/i.test(n)));
});

test('file selection: always-skipped names at any depth, .funcignore as Core Tools reads it, and git agreeing', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'funcfiles-'));
  try {
    const files = ['host.json', 'handler', 'notes.txt', 'EventTrigger/function.json', 'EventTrigger/local.settings.json',
      'local.settings.json', 'LOCAL.SETTINGS.JSON', '.vscode/settings.json', 'sub/.vscode/x', 'src/main.c', 'build/release/handler',
      'dist/enviromon.zip', '.devhost/keys.json', 'node_modules/@azure/x.js', 'node_modules/.bin/azurite', 'tests/x.mjs',
      '.github/workflows/ci.yml', '.gitattributes', 'core', 'vgcore.123', 'a.o', 'README.md', 'Makefile', '.funcignore', '.gitignore'];
    for (const f of files) { fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true }); fs.writeFileSync(path.join(dir, f), f); }
    fs.copyFileSync(path.join(repoRoot, '.funcignore'), path.join(dir, '.funcignore'));
    run('git', ['init', '-q', dir]);
    const want = ['EventTrigger/function.json', 'handler', 'host.json', 'notes.txt'];
    assert.deepEqual(publishedFiles(dir), want);
    assert.deepEqual(gitPublished(dir, path.join(dir, '.funcignore')), want);
    // .git (a directory here, a file in a worktree) never goes in.
    assert.ok(!walkAppFiles(dir).some((f) => f.startsWith('.git/')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Core Tools .funcignore quirks that our file is written around', () => {
  const m = funcignoreMatcher('node_modules/\n*.o\nbuild\n!build/keep\n# comment\n/src\n');
  assert.equal(m.denies('node_modules/x.js'), true);
  assert.equal(m.denies('node_modules/@azure/x.js'), false, 'no word boundary after "/": leaks');
  assert.equal(m.denies('node_modules/.bin/x'), false);
  assert.equal(m.denies('a.o'), true);
  assert.equal(m.denies('src/a.o'), true, 'by /src');
  assert.equal(m.denies('lib/a.o'), false, 'patterns are anchored at the root');
  assert.equal(m.denies('build.log'), true, 'prefix up to a word boundary');
  assert.equal(m.denies('builder/x'), false);
  assert.equal(m.denies('build/keep'), false, '! wins');
  assert.equal(funcignoreMatcher('').denies('anything'), false);
});

test('the handler needs glibc <= 2.31 and only libraries that libc6 ships', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pkg-handler-'));
  try {
    const bin = path.join(tmp, 'handler');
    fs.writeFileSync(bin, execFileSync('unzip', ['-p', ZIP, EXE], { maxBuffer: 64 << 20 }));
    const versions = [...run('objdump', ['-T', bin]).matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.ok(versions.length > 0, 'dynamically linked against glibc');
    const [maj, min] = versions.sort((a, b) => a[0] - b[0] || a[1] - b[1]).at(-1);
    assert.ok(maj < 2 || (maj === 2 && min <= 31), `needs GLIBC_${maj}.${min}; Debian 11 has 2.31`);
    const dyn = run('readelf', ['-d', '-l', bin]);
    const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    const libc6 = ['libc.so.6', 'libpthread.so.0', 'libdl.so.2', 'libm.so.6', 'librt.so.1'];
    assert.deepEqual(needed.filter((n) => !libc6.includes(n)), [], `NEEDED ${needed}`);
    assert.doesNotMatch(dyn, /RPATH|RUNPATH/, 'nothing to find at run time');
    assert.match(dyn, /\[Requesting program interpreter: \/lib64\/ld-linux-x86-64\.so\.2\]/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
