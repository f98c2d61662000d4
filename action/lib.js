// Shared by main.js and post.js: the runner's files and commands, without
// dependencies (the action runs as checked out; nothing is installed).
'use strict';
const fs = require('fs');
const { spawnSync } = require('child_process');

/** An input as the runner passes it: INPUT_<NAME> with spaces as underscores. */
function input(name) {
  return (process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '').trim();
}

function appendFile(variable, text) {
  const file = process.env[variable];
  if (!file) throw new Error(`${variable} is not set: not running on a GitHub Actions runner`);
  fs.appendFileSync(file, text);
}

/** Saved for the post step, which reads it as STATE_<name>. */
function saveState(name, value) {
  appendFile('GITHUB_STATE', `${name}=${value}\n`);
}

function state(name) {
  return process.env[`STATE_${name}`] || '';
}

/** Puts `dir` on PATH for this step and the job's later ones. */
function addPath(dir) {
  appendFile('GITHUB_PATH', `${dir}\n`);
  process.env.PATH = `${dir}:${process.env.PATH}`;
}

function warning(message) {
  console.log(`::warning::${escape(message)}`);
}

function fail(message) {
  console.log(`::error::${escape(message)}`);
  process.exitCode = 1;
}

/** Workflow commands end at a newline: keep a message on its line. */
function escape(message) {
  return String(message).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** Runs a command, its output shown in the log; throws if it fails. */
function run(program, args, options = {}) {
  const r = spawnSync(program, args, { stdio: ['ignore', 'inherit', 'inherit'], ...options });
  if (r.error) throw new Error(`cannot run ${program}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${program} ${args[0] || ''} failed (exit ${r.status})`);
}

/** Whether `program` is on PATH. */
function onPath(program) {
  return (process.env.PATH || '').split(':').some((d) => {
    try {
      fs.accessSync(`${d}/${program}`, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

module.exports = { input, saveState, state, addPath, appendFile, warning, fail, run, onPath };
