// The action's main step: installs the client, logs in with the job's OIDC
// identity, configures Nix to substitute from the cache, and starts
// `provenix watch-store`, whose final look at the store the post step asks for.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawn } = require('child_process');
const lib = require('./lib');

const ARCH = { x64: 'x86_64', arm64: 'aarch64' };

async function download(url) {
  const r = await fetch(url, { redirect: 'follow' });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}

/** The release archive for `version`, checked, unpacked; returns its directory. */
async function installRelease(repository, version) {
  const arch = ARCH[process.arch];
  if (!arch || process.platform !== 'linux') {
    throw new Error(`no release binary for ${process.platform}/${process.arch}`);
  }
  const base = lib.input('release-url') || `https://github.com/${repository}/releases/download`;
  const file = `provenix-${version}-${arch}-linux.tar.gz`;
  const archive = await download(`${base}/${version}/${file}`);
  const digest = crypto.createHash('sha256').update(archive).digest('hex');
  let expected = lib.input('sha256').toLowerCase();
  if (!expected) {
    const sums = (await download(`${base}/${version}/SHA256SUMS`)).toString();
    const line = sums.split('\n').find((l) => l.trim().split(/\s+/)[1] === file);
    if (!line) throw new Error(`SHA256SUMS of ${version} does not list ${file}`);
    expected = line.trim().split(/\s+/)[0].toLowerCase();
  }
  if (digest !== expected) {
    throw new Error(`${file} has SHA-256 ${digest}, not ${expected}: refusing to run it`);
  }
  const dir = path.join(process.env.RUNNER_TEMP || os.tmpdir(), `provenix-${version}`);
  fs.mkdirSync(dir, { recursive: true });
  const tarball = path.join(dir, file);
  fs.writeFileSync(tarball, archive);
  lib.run('tar', ['-xzf', tarball, '-C', dir]);
  fs.rmSync(tarball);
  console.log(`Installed provenix ${version} (${file}, SHA-256 ${digest}).`);
  return dir;
}

function installCargo(repository, version) {
  const root = path.join(process.env.RUNNER_TEMP || os.tmpdir(), 'provenix-cargo');
  const at = /^v\d/.test(version) ? ['--tag', version] : version ? ['--branch', version] : [];
  lib.run('cargo', ['install', '--locked', '--root', root,
    '--git', `https://github.com/${repository}`, ...at, 'provenix-client']);
  return path.join(root, 'bin');
}

async function install() {
  const how = lib.input('install') || 'auto';
  const repository = process.env.GITHUB_ACTION_REPOSITORY || 'provenix/provenix';
  const version = lib.input('version') || process.env.GITHUB_ACTION_REF || '';
  if (!['auto', 'release', 'cargo', 'none'].includes(how)) {
    throw new Error(`install must be auto, release, cargo or none, not ${JSON.stringify(how)}`);
  }
  if (how === 'none' || (how === 'auto' && lib.onPath('provenix'))) {
    if (!lib.onPath('provenix')) throw new Error('install: none, but provenix is not on PATH');
    return;
  }
  if (how === 'release' || (how === 'auto' && /^v\d/.test(version))) {
    try {
      lib.addPath(await installRelease(repository, version));
      return;
    } catch (e) {
      if (how === 'release') throw e;
      lib.warning(`no release binary (${e.message}); building with cargo install --locked`);
    }
  }
  lib.addPath(installCargo(repository, version));
}

async function main() {
  const server = lib.input('server');
  const cache = lib.input('cache');
  const name = lib.input('name') || 'ci';
  if (!server || !cache) throw new Error('the server and cache inputs are required');
  await install();

  // Logged in without a token: pushes exchange the job's OIDC token.
  lib.run('provenix', ['login', name, server]);
  const target = `${name}:${cache}`;
  const token = lib.input('token');
  if (token) console.log(`::add-mask::${token}`);
  if (lib.input('substitute') !== 'false') {
    try {
      // The token (for a private cache) goes to Nix's netrc through the
      // environment, never on a command line, and not to the watcher,
      // whose pushes are signed as the job.
      const env = token ? { ...process.env, PROVENIX_TOKEN: token } : process.env;
      lib.run('provenix', ['use', target], { env });
    } catch (e) {
      lib.warning(`not substituting from ${cache}: ${e.message} (a private cache needs the token input)`);
    }
  }
  if (lib.input('push') === 'false') return;

  const dir = fs.mkdtempSync(path.join(process.env.RUNNER_TEMP || os.tmpdir(), 'provenix-watch-'));
  const summary = path.join(dir, 'summary.jsonl');
  const log = path.join(dir, 'watch-store.log');
  const store = lib.input('store');
  const out = fs.openSync(log, 'a');
  const watcher = spawn('provenix',
    ['watch-store', target, '--summary', summary, ...(store ? ['--store', store] : [])],
    { detached: true, stdio: ['ignore', out, out] });
  watcher.unref();
  lib.saveState('watcher_pid', watcher.pid);
  lib.saveState('summary', summary);
  lib.saveState('log', log);
  lib.saveState('cache', cache);
  console.log(`Watching the store: what this job builds is pushed to ${cache} (log: ${log}).`);
}

main().catch((e) => lib.fail(e.message));
