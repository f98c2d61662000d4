// The action's post step: asks the watcher to stop (it looks at the store
// once more and pushes what the job built last), waits for it, and writes
// what was pushed to the job summary.
'use strict';
const fs = require('fs');
const lib = require('./lib');

const STOP_TIMEOUT_MS = 30 * 60 * 1000;

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function humanBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** The watcher's pushes, one JSON line each, added up. */
function summarize(file) {
  const total = { pushes: 0, uploaded: 0, deduplicated: 0, already_cached: 0, upstream: 0, bytes: 0 };
  const subjects = new Set();
  const keys = new Set();
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n').filter((l) => l.trim())) {
    const s = JSON.parse(line);
    total.pushes++;
    for (const k of ['uploaded', 'deduplicated', 'already_cached', 'upstream', 'bytes']) total[k] += s[k] || 0;
    if (s.subject) subjects.add(s.subject);
    if (s.key_id) keys.add(s.key_id);
  }
  return { total, subjects: [...subjects], keys: [...keys] };
}

/** Markdown cells hold no pipes or newlines from the data. */
const cell = (s) => String(s).replace(/[|\r\n`]/g, ' ');

async function post() {
  const pid = Number(lib.state('watcher_pid'));
  if (!pid) return; // push: false, or main failed before the watcher
  const cache = lib.state('cache');
  if (alive(pid)) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (alive(pid) && Date.now() < deadline) await sleep(200);
    if (alive(pid)) lib.warning('provenix watch-store did not stop within 30 minutes');
  } else {
    lib.warning('provenix watch-store had stopped before the post step: see its log below');
  }
  const log = lib.state('log');
  if (log && fs.existsSync(log)) {
    console.log('::group::provenix watch-store');
    process.stdout.write(fs.readFileSync(log, 'utf8'));
    console.log('::endgroup::');
    if (/provenix: error:/.test(fs.readFileSync(log, "utf8"))) {
      lib.fail('the last push of what this job built failed (see the log above)');
    }
  }
  const { total, subjects, keys } = summarize(lib.state('summary'));
  const rows = [
    ['Paths uploaded', total.uploaded],
    ['NAR bytes uploaded', humanBytes(total.bytes)],
    ['Recorded without upload (deduplicated)', total.deduplicated],
    ['Already in the cache', total.already_cached],
    ['Left to upstream caches', total.upstream],
    ['Signed as', subjects.map((s) => `\`${cell(s)}\``).join(', ') || 'nothing was pushed'],
    ['Signing keys', keys.map((k) => `\`${cell(k)}\``).join(', ') || '-'],
  ];
  const md = [
    `### provenix: pushed to \`${cell(cache)}\``,
    '',
    '| | |',
    '|---|---|',
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
    '',
  ].join('\n');
  lib.appendFile('GITHUB_STEP_SUMMARY', md + '\n');
  console.log(`Pushed ${total.uploaded} paths (${humanBytes(total.bytes)}) to ${cache}, ` +
    `${total.deduplicated} deduplicated, ${total.already_cached} already cached.`);
}

post().catch((e) => lib.fail(e.message));
