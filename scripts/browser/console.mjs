// Drives Debian's chromium through the web console (crates/cli/tests/console.rs
// runs it against a real `agent-harness serve`): a viewer and an operator log in,
// the viewer sees the pending approval without any button, the operator approves
// it with a message by clicking, and both see the request turn `completed`: the
// viewer's page without a reload (the live update). Screenshots go to $SHOTS.
// Exits non-zero with the reason on the first thing that is not as expected.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('BASE');
const OPERATOR_TOKEN = env('OPERATOR_TOKEN');
const VIEWER_TOKEN = env('VIEWER_TOKEN');
const REQUEST_ID = env('REQUEST_ID');
const APPROVAL_ID = env('APPROVAL_ID');
const OPERATOR_NAME = env('OPERATOR_NAME');
const SHOTS = env('SHOTS');
const TIMEOUT = 30_000;
mkdirSync(SHOTS, { recursive: true });

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const profiles = [];
const problems = [];

const check = (ok, what) => { if (!ok) throw new Error(what); };

async function browser(who) {
  const dir = mkdtempSync(join(tmpdir(), `console-${who}-`));
  profiles.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
  ctx.setDefaultTimeout(TIMEOUT);
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      problems.push(`${who}: ${m.text()}`);
    }
  });
  return { ctx, page };
}

async function login(page, token, shot) {
  await page.goto(`${BASE}/console`);
  check(page.url().includes('/console/login'), `without a session /console should go to the login page, got ${page.url()}`);
  if (shot) await page.screenshot({ path: join(SHOTS, shot), fullPage: true });
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${BASE}/console`), page.click('button[type=submit]')]);
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, name), fullPage: true });
const forms = (page) => page.locator(`form[action^="/console/approvals/"]`).count();

let viewer, operator;
try {
  // The viewer: the pending approval, its reason and arguments, and no buttons.
  viewer = await browser('viewer');
  const v = viewer.page;
  await login(v, VIEWER_TOKEN, 'login.png');
  await v.goto(`${BASE}/console/approvals`);
  const card = v.locator(`article[data-approval="${APPROVAL_ID}"]`);
  await card.waitFor();
  const text = await card.innerText();
  check(text.includes('send_mail') && text.includes('ops@example.com'), `the approval should show its tool and arguments: ${text}`);
  check(text.includes('tool policy'), `the approval should show its reason: ${text}`);
  check(await forms(v) === 0, 'a viewer must see no decision forms on the approvals page');
  check(await v.locator('button.approve, button.reject').count() === 0, 'a viewer must see no approve/reject buttons');
  await shot(v, 'viewer-approvals.png');
  await v.goto(`${BASE}/console/requests/${REQUEST_ID}`);
  await v.locator('#status [data-status="waiting_approval"]').waitFor();
  check(await forms(v) === 0, 'a viewer must see no decision forms on the request page');
  await v.locator('#live[data-state="open"]').waitFor();
  // Marks this document: a reload or navigation would lose it.
  await v.evaluate(() => { window.__notReloaded = true; });

  // The operator: overview, approvals, approve with a message by clicking.
  operator = await browser('operator');
  const o = operator.page;
  await login(o, OPERATOR_TOKEN, null);
  await o.locator('#approvals').getByText('1 pending').waitFor();
  check((await o.locator('#recent').innerText()).includes(REQUEST_ID), 'the overview should list the request');
  await shot(o, 'overview.png');
  await o.click('nav >> text=Approvals');
  const mine = o.locator(`article[data-approval="${APPROVAL_ID}"]`);
  await mine.waitFor();
  await o.fill(`#message-${APPROVAL_ID}`, 'checked the recipient: ship it');
  await shot(o, 'approvals.png');
  await Promise.all([
    o.waitForURL(`${BASE}/console/requests/${REQUEST_ID}`),
    mine.locator('button.approve', { hasText: /^Approve$/ }).click(),
  ]);
  await o.locator('#status [data-status="completed"]').waitFor();
  const line = o.locator(`.approval-line[data-approval="${APPROVAL_ID}"]`);
  await line.getByText(OPERATOR_NAME).waitFor();
  const said = await line.innerText();
  check(said.includes('approved') && said.includes('checked the recipient: ship it'), `the timeline should show the decision: ${said}`);
  check((await o.locator('.artifact').innerText()).includes('summary.md'), 'the timeline should link the artifact');
  await shot(o, 'request-completed.png');

  // The viewer's page turned completed by itself.
  await v.locator('#status [data-status="completed"]').waitFor();
  check(await v.evaluate(() => window.__notReloaded === true), 'the viewer page was reloaded: the live update should swap it in place');
  await v.locator(`.approval-line[data-approval="${APPROVAL_ID}"]`).getByText('approved').waitFor();
  await shot(v, 'viewer-request-live.png');

  await o.click('nav >> text=Health');
  await o.locator('#checks').waitFor();
  await shot(o, 'health.png');

  // Logging out ends the session.
  await Promise.all([o.waitForURL(/\/console\/login/), o.click('text=Log out')]);
  await o.goto(`${BASE}/console`);
  check(o.url().includes('/console/login'), 'after logout the console should ask for a token again');

  check(problems.length === 0, `the browser reported: ${problems.join('; ')}`);
  console.log('ok');
} catch (e) {
  for (const [who, b] of [['viewer', viewer], ['operator', operator]]) {
    if (b) await b.page.screenshot({ path: join(SHOTS, `failure-${who}.png`), fullPage: true }).catch(() => {});
  }
  console.error(`console browser test failed: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  for (const b of [viewer, operator]) if (b) await b.ctx.close().catch(() => {});
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
}
