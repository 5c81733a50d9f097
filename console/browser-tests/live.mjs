// The operator's live view in headless Chromium: an operator signs in, opens the watch page
// of a running session, and the camera <video> shows moving frames (two canvas grabs a
// second apart differ). Prints one JSON line of what it measured; exits non-zero on failure.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('IDV_URL');
const session = env('IDV_SESSION');
const shots = env('IDV_SCREENSHOTS');
const [operator, password] = env('IDV_OPERATOR').split(':');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  await page.goto(`${url}/login`);
  await page.fill('#name', operator);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('#sign-in')]);
  const opened = Date.now();
  await page.goto(`${url}/sessions/${session}/watch`);
  await page.waitForFunction(() => {
    const v = document.getElementById('camera');
    return v && v.videoWidth > 0 && v.currentTime > 0.3;
  }, null, { timeout: 20000 });
  const firstFrameMs = Date.now() - opened;
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
  await page.screenshot({ path: `${shots}/live.png` });
  const state = await page.evaluate(() => window.idvLive && window.idvLive.connectionState);
  console.log(JSON.stringify({ ok: true, first_frame_ms: firstFrameMs, size: `${b.width}x${b.height}`, advanced_s: b.time - a.time, connection: state }));
} finally {
  await browser.close();
}
