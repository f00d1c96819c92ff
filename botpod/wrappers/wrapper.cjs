'use strict';
/*
 * the0's Node bot wrapper: `node wrapper.cjs <code dir> <entry file>`.
 *
 * `botpod init` copies this file to `<code dir>/.the0/wrapper.cjs`; the bot container runs it.
 * It honours the0's bot contract: the entry file's `main` (module.exports.main, exports.main, a
 * default export, or the export itself when it is a function) is called as main(botId, config)
 * with the parsed BOT_CONFIG object and awaited if it returns a promise. The outcome goes to
 * `<code dir>/result.json`: success (exit 0), error (stack on stderr, exit 1; an unhandled
 * rejection counts), or terminated (SIGTERM/SIGINT, exit 0 at once).
 * As in the0's own wrapper, an object returned by main with a `status` of "success" or "error"
 * is written as the result.
 *
 * .cjs: CommonJS even when the bot's package.json declares "type": "module".
 * Must NOT: require anything but Node's built-in modules; print BOT_CONFIG or any part of it.
 */
const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const RESULT_NAME = 'result.json';
const [codeDir, entry] = process.argv.slice(2);

function writeResult(status, message) {
  // In place, not by rename: in a pod the file is the bot container's termination message,
  // bind-mounted by the kubelet (a rename onto a mount point fails); it is read after exit.
  const file = path.join(codeDir, RESULT_NAME);
  try {
    fs.writeFileSync(file, JSON.stringify({ status, message }));
  } catch (error) {
    process.stderr.write(`the0 wrapper: cannot write ${RESULT_NAME}: ${error.message}\n`);
  }
}

function fail(error, what) {
  const text = error instanceof Error ? error.message : String(error);
  process.stderr.write(`the0 wrapper: ${what}\n`);
  process.stderr.write(`${error instanceof Error && error.stack ? error.stack : text}\n`);
  writeResult('error', text || 'error');
  process.exit(1);
}

function terminate(signal) {
  writeResult('terminated', `Bot execution terminated by ${signal}`);
  process.exit(0); // at once: never wait for main
}

// Throws an Error whose message never quotes the (secret) text.
function parseConfig(text) {
  if (text === undefined || text.trim() === '') return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error('BOT_CONFIG is not valid JSON');
  }
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`BOT_CONFIG must be a JSON object, not ${Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value;
}

function pickMain(mod) {
  if (mod && typeof mod.main === 'function') return mod.main;
  if (mod && mod.default && typeof mod.default.main === 'function') return mod.default.main;
  if (mod && typeof mod.default === 'function') return mod.default;
  if (typeof mod === 'function') return mod;
  return null;
}

async function loadMain(file) {
  let mod;
  try {
    mod = require(file);
  } catch (error) {
    if (!error || error.code !== 'ERR_REQUIRE_ESM') throw error;
    mod = await import(pathToFileURL(file).href); // an ES module entry file
  }
  const main = pickMain(mod);
  if (main === null) throw new Error(`${entry} exports no main(botId, config) function`);
  return main;
}

async function run() {
  if (!codeDir || !entry) {
    process.stderr.write('usage: node wrapper.cjs <code dir> <entry file>\n');
    process.exit(2);
  }
  process.on('SIGTERM', () => terminate('SIGTERM'));
  process.on('SIGINT', () => terminate('SIGINT'));
  process.on('unhandledRejection', (reason) => fail(reason, 'unhandled promise rejection'));
  process.on('uncaughtException', (error) => fail(error, 'uncaught exception'));
  process.chdir(codeDir);

  const botId = process.env.BOT_ID || '';
  let config;
  try {
    config = parseConfig(process.env.BOT_CONFIG);
  } catch (error) {
    process.stderr.write(`the0 wrapper: ${error.message}\n`);
    writeResult('error', error.message);
    process.exit(1);
  }
  let main;
  try {
    main = await loadMain(path.join(codeDir, entry));
  } catch (error) {
    fail(error, `cannot load ${entry}`);
  }
  let value;
  try {
    value = await main(botId, config);
  } catch (error) {
    fail(error, 'main failed');
  }
  if (value && typeof value === 'object' && (value.status === 'success' || value.status === 'error')) {
    writeResult(value.status, String(value.message ?? ''));
  } else {
    writeResult('success', 'Bot executed successfully');
  }
  process.exit(0);
}

run();
