// Drives porthole's console pages in headless Chromium, as a person would: log in, open the
// VM's page, click Console, and use it. Run by crates/cli/tests/browser.rs, which starts the
// plane and the guest and checks what this script reports against the guest itself.
//
// Environment: PORTHOLE_URL, PORTHOLE_USER, PORTHOLE_PASSWORD, VM_ID, MODE (vnc | serial),
// OUT (a directory for captures), MARKER (text to type).
// Protocol on stdout, one JSON object per line; for vnc the script stops after capturing the
// screen until it reads a line on stdin, so the test can capture the guest's screen at the
// same moment.
import { chromium } from 'playwright-core';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('PORTHOLE_URL');
const vmId = env('VM_ID');
const mode = env('MODE');
const marker = env('MARKER');
const say = (event) => console.log(JSON.stringify(event));
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'porthole-chromium-')), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => { if (message.type() === 'error') problems.push(`console: ${message.text()}`); });
  page.on('response', (response) => { if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`); });

  // Asking for the VM's page sends us to the login form first, and back afterwards.
  await page.goto(`${base}/vms/${vmId}`);
  await page.waitForURL(/\/login/);
  await page.fill('#username', env('PORTHOLE_USER'));
  await page.fill('#password', env('PORTHOLE_PASSWORD'));
  await Promise.all([page.waitForURL(new RegExp(`/vms/${vmId}$`)), page.click('button[type=submit]')]);
  const cookie = (await browser.cookies()).find((c) => c.name === 'porthole_session');
  say({ event: 'logged_in', cookie: { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite } });

  if (mode === 'vnc') {
    await page.click('#open-vnc');
    await page.waitForFunction(() => window.porthole?.connected === true, null, { timeout: 30000 });
    // Let the first full framebuffer update arrive and render.
    await page.waitForTimeout(3000);
    const capture = await page.evaluate(() => {
      const canvas = document.querySelector('#screen canvas');
      return { width: canvas.width, height: canvas.height, png: canvas.toDataURL('image/png') };
    });
    writeFileSync(join(env('OUT'), 'canvas.png'), Buffer.from(capture.png.split(',')[1], 'base64'));
    const buttons = await page.evaluate(() => ['ctrl-alt-del', 'fit', 'send-clipboard'].every((id) => document.getElementById(id)));
    say({ event: 'captured', width: capture.width, height: capture.height, buttons });
    await stdinLines.next();
    // Type into the guest's VGA console through noVNC.
    await page.click('#screen canvas');
    await page.keyboard.type(`echo ${marker}`, { delay: 20 });
    await page.keyboard.press('Enter');
    await page.waitForTimeout(1500);
    say({ event: 'typed', problems });
  } else {
    await page.click('#open-serial');
    await page.waitForFunction(() => window.porthole?.connected === true, null, { timeout: 30000 });
    const lines = () => page.evaluate(() => {
      const buffer = window.porthole.term.buffer.active;
      const out = [];
      for (let i = 0; i < buffer.length; i++) out.push(buffer.getLine(i).translateToString(true));
      return out;
    });
    const waitForLine = async (wanted, timeout = 30000) => {
      const deadline = Date.now() + timeout;
      while (Date.now() < deadline) {
        if ((await lines()).some((line) => line.trim() === wanted)) return true;
        await page.waitForTimeout(200);
      }
      return false;
    };
    await page.click('#terminal');
    await page.keyboard.type(`echo ${marker}`, { delay: 20 });
    await page.keyboard.press('Enter');
    const echoed = await waitForLine(marker);
    // The terminal's size reached the guest: stty reports what xterm.js shows.
    const size = await page.evaluate(() => `${window.porthole.term.rows} ${window.porthole.term.cols}`);
    let sized = false;
    for (let attempt = 0; attempt < 10 && !sized; attempt++) {
      await page.keyboard.type('stty size', { delay: 10 });
      await page.keyboard.press('Enter');
      sized = await waitForLine(size, 2000);
    }
    say({ event: 'serial', echoed, size, sized, problems });
  }
} finally {
  await browser.close();
}
process.exit(0);
