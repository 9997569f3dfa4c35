#!/usr/bin/env node
// idlereset verify driver: one idle connection of a real Node client library.
//
// usage: node driver.js LIBRARY TARGET_JSON IDLE_S SETTINGS_JSON
//
// LIBRARY is `pg` (node-postgres) or `ioredis`. SETTINGS_JSON holds the library's own options
// ({} = the library's defaults). Prints {"event":"connected",...} after the first query, stays
// idle IDLE_S seconds, runs one more query and prints {"event":"result",...}. The application
// log (console.error with the error's stack, as applications write it) goes to stderr.
'use strict';
const [lib, targetJson, idleS, settingsJson] = process.argv.slice(2);
const target = JSON.parse(targetJson);
const idle = Number(idleS);
const settings = JSON.parse(settingsJson);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const logLine = (level, msg) => process.stderr.write(`${new Date().toISOString()} ${level} app ${msg}\n`);
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
const version = (name) => require(`${name}/package.json`).version;

async function pgRun() {
  const { Client } = require('pg');
  const c = new Client({ ...target, ...settings });
  c.on('error', (e) => logLine('ERROR', `client error: ${e.message}`));
  await c.connect();
  await c.query("select 'before'");
  const port = c.connection.stream.localPort;
  emit({ event: 'connected', library: 'node-pg', version: version('pg'), local_port: port });
  logLine('INFO', `connected conn=${port}, idle for ${idle}s`);
  await sleep(idle);
  const r = await c.query("select 'after' as a");
  await c.end().catch(() => {});
  return [r.rows[0].a === 'after', false];
}

async function ioredisRun() {
  const Redis = require('ioredis');
  const r = new Redis({ host: target.host, port: target.port, lazyConnect: true, ...settings });
  r.on('error', (e) => logLine('ERROR', `[ioredis] ${e.message}`));
  let reconnects = 0;
  r.on('reconnecting', () => { reconnects += 1; });
  await r.connect();
  await r.ping();
  const port = r.stream.localPort;
  emit({ event: 'connected', library: 'ioredis', version: version('ioredis'), local_port: port });
  logLine('INFO', `connected conn=${port}, idle for ${idle}s`);
  await sleep(idle);
  const pong = await r.ping();
  const now = r.stream.localPort;
  if (now !== port) logLine('WARN', `conn=${port} was replaced by conn=${now} after ${idle}s idle (reconnected)`);
  r.disconnect();
  return [pong === 'PONG', now !== port || reconnects > 0];
}

(async () => {
  try {
    const [ok, retried] = await (lib === 'pg' ? pgRun() : ioredisRun());
    emit({ event: 'result', outcome: ok ? 'survived' : 'error', retried, error: null });
  } catch (e) {
    logLine('ERROR', `query failed after ${idle}s idle: ${e.stack}`);
    emit({ event: 'result', outcome: 'error', retried: false, error: e.message });
  }
  process.exit(0);
})();
