// An operator runs a session in headless Chromium: signs in, starts a session and reads the
// code off the page; the test starts `idv agent` with it. The page then shows the customer
// joining and consenting, the live camera moving (two canvas grabs a second apart differ),
// chat both ways (the agent's side is its terminal), the customer pausing, resuming and
// hiding a region; the operator ends the session from the page.
//
// Talks to the test on stdout, one JSON line each: {"step":"code",...} when the code is shown,
// {"step":"chat_sent"} once the operator's message is sent; the last line is the result.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import readline from 'node:readline';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('IDV_URL');
const shots = env('IDV_SCREENSHOTS');
const [operator, password] = env('IDV_OPERATOR').split(':');
const say = (line) => console.log(JSON.stringify(line));
// What the test answers on standard input: one JSON line, then standard input is let go
// (an open stdin would keep node running, and the test waits for node to finish).
const answer = async () => {
  const lines = readline.createInterface({ input: process.stdin });
  const { value: line } = await lines[Symbol.asyncIterator]().next();
  lines.close();
  process.stdin.destroy();
  return JSON.parse(line);
};

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 1100 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${url}/login`);
  await page.fill('#name', operator);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('#sign-in')]);

  // Start a session: the code is shown large, once.
  await page.goto(`${url}/sessions`);
  await page.fill('#case-reference', 'KYC-2026-0815');
  await Promise.all([page.waitForURL(/\/sessions\/[0-9a-f-]{36}$/), page.click('#start-session')]);
  await page.waitForSelector('#code-panel:not([hidden])');
  const code = (await page.textContent('#code')).replace(/\s/g, '');
  assert.match(code, /^\d{6}$/, 'a 6-digit code is shown');
  const session = page.url().split('/').pop();
  assert.equal(await page.textContent('#session-case'), 'KYC-2026-0815', 'the case is shown');
  await page.screenshot({ path: `${shots}/session-code.png` });
  say({ step: 'code', code, session });
  const { clock_origin_unix_ms: clockOrigin } = await answer();

  // The customer joins with the agent and consents; the page follows.
  const started = Date.now();
  await page.waitForFunction(() => document.getElementById('session-state').textContent === 'live', null, { timeout: 30000 });
  const liveAfterMs = Date.now() - started;
  const scopes = await page.textContent('#session-scopes');
  assert.ok(scopes.includes('camera') && scopes.includes('recording'), `consent shown: ${scopes}`);
  assert.ok(await page.isHidden('#code-panel'), 'the code is hidden once the customer joined');

  // The live camera moves.
  await page.waitForFunction(() => {
    const v = document.getElementById('camera');
    return v && v.videoWidth > 0 && v.currentTime > 0.3;
  }, null, { timeout: 20000 });
  const grab = () => page.evaluate(() => {
    const v = document.getElementById('camera');
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 16) sum = (sum * 31 + d[i]) >>> 0;
    return { hash: sum, width: c.width, height: c.height, time: v.currentTime };
  });
  const a = await grab();
  await page.waitForTimeout(1000);
  const b = await grab();
  assert.notEqual(a.hash, b.hash, 'the live picture moves');
  assert.ok(b.time > a.time, 'the live video plays on');

  // Capture → the operator's screen: each frame's RTP timestamp is its capture time on the
  // agent's clock (90 kHz); the agent runs on this machine, so its clock's zero in wall time
  // (from the test) makes it comparable with when Chromium expects to show the frame.
  const latency = await page.evaluate(({ origin }) => new Promise((resolve) => {
    const v = document.getElementById('camera');
    const samples = [];
    const until = performance.now() + 4000;
    const each = (now, meta) => {
      if (meta.rtpTimestamp !== undefined) {
        const captured = origin + meta.rtpTimestamp / 90;
        samples.push(performance.timeOrigin + meta.expectedDisplayTime - captured);
      }
      if (performance.now() < until) v.requestVideoFrameCallback(each);
      else resolve(samples);
    };
    v.requestVideoFrameCallback(each);
  }), { origin: clockOrigin });
  assert.ok(latency.length > 20, `frames measured: ${latency.length}`);
  latency.sort((x, y) => x - y);
  const pct = (p) => latency[Math.min(latency.length - 1, Math.floor(p * latency.length))];
  const latencyMs = { frames: latency.length, p50: pct(0.5), p95: pct(0.95), max: latency[latency.length - 1] };

  // Chat both ways.
  await page.fill('#chat-text', 'Hello from the bank');
  await page.click('#chat-send');
  await page.waitForFunction(() => document.getElementById('chat-log').textContent.includes('Hello from the bank'));
  say({ step: 'chat_sent' });
  await page.waitForFunction(() => document.getElementById('chat-log').textContent.includes('Customer: Hello from the customer'), null, { timeout: 20000 });

  // The customer pauses, resumes and hides a region: the page says so at once.
  const events = (text) => page.waitForFunction((t) => document.getElementById('event-log').textContent.includes(t), text, { timeout: 20000 });
  await events('PAUSED');
  await events('resumed');
  await events('hides 1 region');
  await page.screenshot({ path: `${shots}/session.png` });

  // The operator ends the session.
  await page.click('#end-session');
  await page.waitForFunction(() => document.getElementById('session-state').textContent === 'ended', null, { timeout: 20000 });
  assert.deepEqual(problems, [], 'no script errors');
  say({ ok: true, session, live_after_ms: liveAfterMs, size: `${b.width}x${b.height}`, advanced_s: b.time - a.time, latency_ms: latencyMs });
} finally {
  await browser.close();
}
