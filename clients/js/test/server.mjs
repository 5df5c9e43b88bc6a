// Starts and stops real tickcast servers for the tests, and small helpers to wait on
// client events. Every wait is bounded.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.TICKCAST_BIN || path.join(ROOT, 'target', 'debug', 'tickcast');
export const WAIT_MS = 20_000;

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `tickcast serve` on `port` with `args` (and `config`, TOML text, if given);
 * resolves once it prints its listening line.
 */
export async function startServer(port, args = [], config = null) {
  if (!fs.existsSync(BIN)) throw new Error(`server binary missing: ${BIN} (tests/js/run.sh builds it)`);
  const all = ['serve', '--listen', `127.0.0.1:${port}`, '--no-pin', '--workers', '1', ...args];
  let dir = null;
  if (config !== null) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tickcast-js-'));
    fs.writeFileSync(path.join(dir, 'tickcast.toml'), config);
    all.push('--config', path.join(dir, 'tickcast.toml'));
  }
  const child = spawn(BIN, all, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  readline.createInterface({ input: child.stderr }).on('line', (l) => {
    log.push(l);
    if (log.length > 200) log.shift();
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tickcast did not start within ${WAIT_MS} ms:\n${log.join('\n')}`));
    }, WAIT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tickcast exited early (code ${code}, signal ${signal}):\n${log.join('\n')}`));
    });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (/^tickcast listening on /.test(line)) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve();
      }
    });
  });
  return {
    child,
    log,
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    stop: () => stopServer(child, dir),
  };
}

/** SIGTERM, and wait for the exit; SIGKILL and fail if it takes too long. */
function stopServer(child, dir) {
  return new Promise((resolve, reject) => {
    const done = () => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
      resolve();
    };
    if (child.exitCode !== null || child.signalCode !== null) return done();
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('tickcast did not exit within 10 s of SIGTERM'));
    }, 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    child.kill('SIGTERM');
  });
}

/** Resolves when `pred()` is true (polled), rejects after `ms` naming `what`. */
export async function until(what, pred, ms = WAIT_MS) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The next `type` event of `client` whose arguments pass `pred`. */
export function next(client, type, pred = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${ms} ms`));
    }, ms);
    const off = client.on(type, (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args[0]);
    });
  });
}

/** An HS256 JWT with `claims`, signed with `secret`. */
export function jwt(claims, secret) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${crypto.createHmac('sha256', secret).update(body).digest('base64url')}`;
}
