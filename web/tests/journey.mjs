// Walks porthole's portal in headless Chromium, as a member or an admin would. Run by
// crates/cli/tests/portal_browser.rs, which starts the plane and checks what this script
// reports against the plane's API and the guest itself.
//
// Environment: PORTHOLE_URL, PORTHOLE_USER, PORTHOLE_PASSWORD, JOURNEY (member | admin),
// OUT (a directory for screenshots); for member: VM_NAME; for admin: MEMBER, ISO.
// Protocol on stdout: one JSON object per line; the last is {"done": true} or {"error": ...}.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('PORTHOLE_URL');
const out = env('OUT');
const say = (event) => console.log(JSON.stringify(event));

const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'porthole-chromium-')), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // A phone-sized screen: the portal must work there.
  viewport: { width: 390, height: 844 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});
const page = browser.pages()[0] ?? await browser.newPage();
const problems = [];
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => { if (message.type() === 'error') problems.push(`console: ${message.text()}`); });
let shot = 0;
const snap = async (name) => page.screenshot({ path: join(out, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
// Nothing may stick out sideways on a phone.
const fitsThePhone = async (what) => {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`${what} is ${overflow}px wider than a 390px screen`);
};
const notice = async () => (await page.locator('.flash').first().textContent({ timeout: 10_000 })).trim();

try {
  await page.goto(`${base}/vms`);
  await page.waitForURL(/\/login/);
  await page.fill('#username', env('PORTHOLE_USER'));
  await page.fill('#password', env('PORTHOLE_PASSWORD'));
  await Promise.all([page.waitForURL(/\/vms$/), page.click('button[type=submit]')]);
  await fitsThePhone('my VMs');
  await snap('my-vms');

  if (env('JOURNEY') === 'member') {
    const name = env('VM_NAME');
    await page.click('#new-vm');
    await page.waitForURL(/\/vms\/new$/);
    await page.fill('#name', name);
    await page.selectOption('#source', 'template:demo');
    await page.fill('#memory_mib', '256');
    await fitsThePhone('the create wizard');
    await snap('wizard');
    await page.click('#create button[type=submit]');
    await page.waitForSelector('#guest-password');
    const user = (await page.textContent('#guest-user')).trim();
    const password = (await page.textContent('#guest-password')).trim();
    say({ created: name, user, password });
    await snap('created');
    // The page follows the create job, and stays so the password can be copied.
    await page.waitForSelector('#job[data-state=succeeded]', { timeout: 120_000 });
    await page.click('#to-vm');
    await page.waitForURL(/\/vms\/[0-9a-f-]{36}$/);
    const id = page.url().split('/').pop();
    await page.waitForSelector('#vm-state.state-running', { timeout: 60_000 });
    say({ running: id });
    await fitsThePhone('the VM page');
    await snap('vm-running');

    // Its console shows the guest.
    await page.click('#open-serial');
    await page.waitForURL(/console\/serial$/);
    await page.waitForFunction(() => document.querySelector('#terminal')?.textContent.includes('porthole-guest ready'), null, { timeout: 120_000 });
    const screen = await page.locator('#terminal').textContent();
    say({ console: screen.match(/porthole-guest cloud-init:[^\n]*?keys=\d+/)?.[0] ?? screen.slice(-500) });
    await snap('console');
    await page.goto(`${base}/vms/${id}`);

    const before = (await page.textContent('#expires')).trim();
    await page.click('#renew');
    await page.waitForURL(/notice=/);
    say({ renewed: await notice(), before, after: (await page.textContent('#expires')).trim() });

    // Delete asks for the name first.
    await page.fill('#confirm', 'not-the-name');
    await page.click('#delete button[type=submit]');
    await page.waitForURL(/error=/);
    say({ refused: await page.locator('.flash.error').textContent() });
    await page.fill('#confirm', name);
    await page.click('#delete button[type=submit]');
    // The VM's page follows the delete job (it may be over at once), then shows the list
    // without the VM.
    await page.waitForURL(/\/vms\?notice=deleted/, { timeout: 120_000 });
    say({ deleted: await notice() });
    if (await page.locator(`#vms a:has-text("${name}")`).count()) throw new Error(`${name} is still listed`);
    await snap('deleted');
  } else {
    const member = env('MEMBER');
    await page.click('a[href="/admin"]');
    await page.waitForURL(/\/admin$/);
    await fitsThePhone('the admin overview');
    await snap('admin');
    await page.click('a[href="/admin/users"]');
    const card = page.locator(`#user-${member}`);
    await card.locator('input[name=cores]').fill('6');
    await card.locator('button:has-text("Save limits")').click();
    await page.waitForURL(/notice=/);
    say({ limits: await notice() });
    await snap('users');
    await page.click('a[href="/admin/images"]');
    await page.click(`button[data-approve="${env('ISO')}"]`);
    await page.waitForURL(/notice=/);
    say({ approved: await notice() });
    await snap('images');
    await page.click('a[href="/admin/audit"]');
    const audit = await page.locator('#audit tbody').textContent();
    say({ audit_has_limits: audit.includes('user.limits'), audit_has_approve: audit.includes('iso.approve') });
    await snap('audit');
  }
  if (problems.length) throw new Error(problems.join('; '));
  say({ done: true });
} catch (error) {
  await snap('failure').catch(() => {});
  say({ error: String(error?.stack || error), problems });
  process.exitCode = 1;
} finally {
  await browser.close();
}
