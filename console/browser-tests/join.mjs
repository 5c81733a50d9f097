// The customer join page in headless Chromium with its fake camera: the customer opens /join,
// types the code, consents, sends the camera for IDV_SECONDS (chatting with the adviser on the
// session page, when IDV_OPERATOR is given), and leaves. Prints one JSON line
// of what it measured (codec negotiated, codecs offered, time to connect, frames sent, the
// console's answer to leaving); exits non-zero on failure.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('IDV_URL');
const code = env('IDV_CODE');
const seconds = Number(env('IDV_SECONDS'));
const shots = env('IDV_SCREENSHOTS');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });

  await page.goto(`${url}/join`);
  await page.fill('#code', code);
  await page.check('#consent-recording');
  await page.screenshot({ path: `${shots}/join.png` });

  const clicked = Date.now();
  await page.click('#join-button');
  await page.waitForFunction(
    () => window.idvJoin.pc && window.idvJoin.pc.connectionState === 'connected',
    null, { timeout: 30000 },
  ).catch(async (error) => {
    const message = await page.textContent('#join-message');
    throw new Error(`not connected: ${message} (${problems.join('; ')}): ${error}`);
  });
  const connectedMs = Date.now() - clicked;
  const notice = await page.textContent('#notice');
  assert.match(notice, /remote support in progress/i, 'the notice is up while sending');
  assert.ok(await page.isVisible('#leave'), 'the customer can leave');

  // With an adviser (IDV_OPERATOR, IDV_SESSION): they open the session page in another
  // browser context, and the two chat both ways while the camera is sent.
  let chat = null;
  if (process.env.IDV_OPERATOR) {
    const [operator, password] = process.env.IDV_OPERATOR.split(':');
    const adviserContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 1100 } });
    const adviser = await adviserContext.newPage();
    await adviser.goto(`${url}/login`);
    await adviser.fill('#name', operator);
    await adviser.fill('#password', password);
    await Promise.all([adviser.waitForLoadState('load'), adviser.click('#sign-in')]);
    await adviser.goto(`${url}/sessions/${env('IDV_SESSION')}`);
    await adviser.waitForFunction(() => document.getElementById('session-state').textContent === 'live', null, { timeout: 20000 });
    await page.waitForFunction(() => window.idvJoin.chat && window.idvJoin.chat.readyState === 'open', null, { timeout: 20000 });
    const sentAt = Date.now();
    await adviser.fill('#chat-text', 'Please hold your ID card up to the camera');
    await adviser.click('#chat-send');
    await page.waitForFunction(() => document.getElementById('join-chat-log').textContent.includes('hold your ID card'), null, { timeout: 20000 });
    const toCustomerMs = Date.now() - sentAt;
    const answeredAt = Date.now();
    await page.fill('#join-chat-text', 'Like this?');
    await page.click('#join-chat-send');
    await adviser.waitForFunction(() => document.getElementById('chat-log').textContent.includes('Customer: Like this?'), null, { timeout: 20000 });
    chat = { to_customer_ms: toCustomerMs, to_adviser_ms: Date.now() - answeredAt };
    await adviser.screenshot({ path: `${shots}/join-adviser.png` });
  }

  await page.waitForTimeout(seconds * 1000);
  await page.screenshot({ path: `${shots}/join-sharing.png` });
  const sent = await page.evaluate(async () => {
    const stats = await window.idvJoin.pc.getStats();
    const out = {};
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.frames_encoded = s.framesEncoded;
        out.frames_sent = s.framesSent;
        out.size = `${s.frameWidth}x${s.frameHeight}`;
        out.encoder = s.encoderImplementation;
        out.codec_id = s.codecId;
      }
    });
    if (out.codec_id) out.codec = stats.get(out.codec_id).mimeType;
    delete out.codec_id;
    return out;
  });
  const offered = await page.evaluate(() => {
    const names = new Set();
    for (const line of window.idvJoin.offeredSdp.split(/\r?\n/)) {
      const m = line.match(/^a=rtpmap:\d+ ([^/]+)\//);
      if (m) names.add(m[1]);
    }
    return [...names];
  });
  const codec = await page.evaluate(() => window.idvJoin.codec);

  await page.click('#leave');
  await page.waitForFunction(() => window.idvJoin.done === true, null, { timeout: 60000 });
  const left = await page.evaluate(() => window.idvJoin.leaveAnswer);
  const message = await page.textContent('#join-message');
  assert.match(message, /You have left/, message);
  assert.ok(left && left.acknowledged === true, `everything sent was acknowledged: ${JSON.stringify(left)}`);
  console.log(JSON.stringify({
    ok: true, codec, offered, connected_ms: connectedMs, sent, left, chat, problems,
  }));
} finally {
  await browser.close();
}
