// `make publish APP=...` (run by `make check-package`, after the package is built): without
// Core Tools or the Azure CLI it says what to install and builds nothing; with func it runs
// `func azure functionapp publish APP` on the packaged tree with the worker runtime set to
// custom; with only az it deploys dist/enviromon.zip with config-zip, looking up the resource
// group. Neither tool can run here (no Azure), so stand-ins record how they were called.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../js/lib/handler.mjs';

function makePublish(vars, env = {}) {
  const r = spawnSync('make', ['--no-print-directory', '-C', repoRoot, 'publish', ...vars],
    { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** A stand-in command that appends "cwd|args" and some facts about its directory to log. */
function standIn(dir, name, log, extra = '') {
  const p = path.join(dir, name);
  fs.writeFileSync(p, `#!/bin/sh\n${extra}\nprintf '%s|%s|%s|%s\\n' "$PWD" "$*" "$(stat -c %a handler 2>/dev/null)" "$(cat local.settings.json 2>/dev/null)" >>"${log}"\n`);
  fs.chmodSync(p, 0o755);
  return p;
}

test('without func or az: says what to install, fails, and builds nothing', () => {
  const zipBefore = fs.statSync(path.join(repoRoot, 'dist', 'enviromon.zip')).mtimeMs;
  const r = makePublish(['APP=enviromon-check', 'FUNC=enviromon-no-such-func', 'AZ=enviromon-no-such-az']);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /neither Azure Functions Core Tools \('enviromon-no-such-func'\) nor the Azure CLI \('enviromon-no-such-az'\) is installed/);
  assert.match(r.out, /Install one of them/);
  assert.match(r.out, /functions-run-local/);
  assert.match(r.out, /install-azure-cli/);
  assert.doesNotMatch(r.out, /package:/, 'nothing was built');
  assert.equal(fs.statSync(path.join(repoRoot, 'dist', 'enviromon.zip')).mtimeMs, zipBefore);
});

test('without APP: usage', () => {
  const r = makePublish([]);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /usage: make publish APP=<function app name>/);
});

test('with func: func azure functionapp publish APP on the packaged tree, runtime custom', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'publish-func-'));
  try {
    const log = path.join(dir, 'calls');
    const func = standIn(dir, 'func', log, 'ls -A | sort | tr "\\n" " " >>"' + path.join(dir, 'listing') + '"');
    const r = makePublish(['APP=enviromon-check', `FUNC=${func}`, 'AZ=enviromon-no-such-az', 'PUBLISH_ARGS=--nozip']);
    assert.equal(r.code, 0, r.out);
    const [cwd, args, mode, settings] = fs.readFileSync(log, 'utf8').trim().split('|');
    assert.equal(args, 'azure functionapp publish enviromon-check --nozip');
    assert.notEqual(cwd, repoRoot, 'never from the repository root (its ./handler is the local build)');
    assert.equal(mode, '755');
    assert.deepEqual(JSON.parse(settings), { IsEncrypted: false, Values: { FUNCTIONS_WORKER_RUNTIME: 'custom' } });
    const listing = fs.readFileSync(path.join(dir, 'listing'), 'utf8').trim().split(' ');
    const packaged = fs.readdirSync(path.join(repoRoot, 'dist', 'enviromon'));
    assert.deepEqual(listing.sort(), [...packaged, 'local.settings.json'].sort());
    assert.ok(!fs.existsSync(cwd), 'the staging copy is removed');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('with only az: config-zip with dist/enviromon.zip, resource group looked up or given', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'publish-az-'));
  try {
    const log = path.join(dir, 'calls');
    const az = standIn(dir, 'az', log, 'case "$1 $2" in "functionapp list") echo rg-found; printf "%s\\n" "$*" >>"' + log + '.list"; exit 0;; esac');
    let r = makePublish(['APP=enviromon-check', 'FUNC=enviromon-no-such-func', `AZ=${az}`]);
    assert.equal(r.code, 0, r.out);
    assert.match(fs.readFileSync(`${log}.list`, 'utf8'), /functionapp list --query \[\?name=='enviromon-check'\]\.resourceGroup/);
    const zip = path.join(repoRoot, 'dist', 'enviromon.zip');
    assert.equal(fs.readFileSync(log, 'utf8').trim().split('|')[1],
      `functionapp deployment source config-zip --resource-group rg-found --name enviromon-check --src ${zip}`);
    fs.rmSync(log);
    r = makePublish(['APP=enviromon-check', 'RG=my-rg', 'FUNC=enviromon-no-such-func', `AZ=${az}`]);
    assert.equal(r.code, 0, r.out);
    assert.match(fs.readFileSync(log, 'utf8'), /config-zip --resource-group my-rg --name enviromon-check --src /);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
