// The console in headless Chromium (Debian's, driven by playwright-core): sign-in refused
// from a disallowed address, an operator refused recordings, a compliance officer who finds
// a recording, opens it for a reason, plays it, seeks, verifies it and reads the audit log.
// Screenshots of each page go to $IDV_SCREENSHOTS. Prints one JSON line of what it measured;
// exits non-zero at the first failed check. Run by `cargo test -p idv --test browser`.
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
const [compliance, compliancePassword] = env('IDV_COMPLIANCE').split(':');
const [operator, operatorPassword] = env('IDV_OPERATOR').split(':');
const [faraway, farawayPassword] = env('IDV_FARAWAY').split(':');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const measured = {};
try {
  const context = async () => browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 860 } });

  async function signIn(page, name, password) {
    await page.goto(`${url}/login`);
    await page.fill('#name', name);
    await page.fill('#password', password);
    await Promise.all([page.waitForLoadState('load'), page.click('#sign-in')]);
  }

  // 1. A user whose list leaves out this address is refused, and told why.
  {
    const page = await (await context()).newPage();
    await page.goto(`${url}/login`);
    await page.screenshot({ path: `${shots}/login.png` });
    await signIn(page, faraway, farawayPassword);
    const error = await page.textContent('#login-error');
    assert.match(error, /may not log in from 127\.0\.0\.1/);
    await page.screenshot({ path: `${shots}/login-refused.png` });
    measured.refused_login = error.trim();
  }

  // 2. An operator signs in but cannot open recordings.
  {
    const page = await (await context()).newPage();
    await signIn(page, operator, operatorPassword);
    assert.equal(await page.textContent('#signed-in-as'), `${operator} · operator · default`);
    const response = await page.goto(`${url}/recordings/${session}`);
    assert.equal(response.status(), 403);
    measured.operator_refused = response.status();
  }

  // 3. Compliance: find, open for a reason, play, seek, verify, audit.
  {
    const page = await (await context()).newPage();
    await signIn(page, compliance, compliancePassword);
    await page.click('#nav-recordings');
    await page.fill('input[name=session]', session.slice(0, 8));
    await Promise.all([page.waitForLoadState('load'), page.click('#search button')]);
    const row = page.locator(`tr[data-session="${session}"]`);
    assert.equal(await row.count(), 1);
    measured.status = (await row.locator('td.status').textContent()).trim();
    await page.screenshot({ path: `${shots}/recordings.png` });
    await Promise.all([page.waitForLoadState('load'), row.locator('a').click()]);
    await page.fill('#reason', 'customer complaint 2026-114 (browser test)');
    await Promise.all([page.waitForLoadState('load'), page.click('#open')]);
    assert.match(await page.textContent('#reason'), /customer complaint 2026-114/);

    // Plays: time moves and a decoded frame has pixels.
    const played = await page.evaluate(async () => {
      const video = document.getElementById('player');
      video.muted = true;
      await video.play();
      const started = performance.now();
      while (video.currentTime < 1.0 && performance.now() - started < 15000) {
        await new Promise((r) => setTimeout(r, 100));
      }
      video.pause();
      return { currentTime: video.currentTime, duration: video.duration, width: video.videoWidth, height: video.videoHeight };
    });
    assert.ok(played.currentTime >= 1.0, `played to ${played.currentTime}`);
    assert.ok(played.width > 0 && played.height > 0, 'a decoded picture');
    measured.played = played;

    // Seeks to the middle: the player asks for that range and shows the frame there.
    const seeked = await page.evaluate(async () => {
      const video = document.getElementById('player');
      const target = video.duration / 2;
      const done = new Promise((r) => video.addEventListener('seeked', r, { once: true }));
      video.currentTime = target;
      await done;
      const canvas = document.createElement('canvas');
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      const g = canvas.getContext('2d');
      g.drawImage(video, 0, 0);
      const pixels = g.getImageData(0, 0, canvas.width, canvas.height).data;
      const seen = new Set();
      for (let i = 0; i < pixels.length; i += 4 * 97) seen.add(`${pixels[i] >> 4},${pixels[i + 1] >> 4},${pixels[i + 2] >> 4}`);
      return { target, currentTime: video.currentTime, colours: seen.size };
    });
    assert.ok(Math.abs(seeked.currentTime - seeked.target) < 0.5, `seeked to ${seeked.currentTime} for ${seeked.target}`);
    assert.ok(seeked.colours >= 4, `a real picture after the seek (${seeked.colours} colours)`);
    measured.seeked = seeked;
    await page.screenshot({ path: `${shots}/recording.png`, fullPage: true });

    await Promise.all([page.waitForLoadState('load'), page.click('#verify')]);
    assert.match(await page.textContent('#verify-result'), /^Intact/);

    await page.click('#nav-audit');
    await page.waitForLoadState('load');
    assert.match(await page.textContent('#chain'), /audit log intact/);
    const actions = await page.locator('#audit tbody td:nth-child(4)').allTextContents();
    for (const action of ['console.login', 'recording.view', 'recording.play', 'recording.verify']) {
      assert.ok(actions.includes(action), `${action} in the audit page`);
    }
    measured.audit_rows = actions.length;
    await page.screenshot({ path: `${shots}/audit.png` });
  }
  console.log(JSON.stringify({ ok: true, ...measured }));
} finally {
  await browser.close();
}
