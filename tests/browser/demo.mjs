// Drives the demo page (static/index.html) in the system's Chromium, as a
// user would: two pages, each with two panes (page 1: Alice | Bob, both in
// Acme; page 2: Carol (Globex) | Dave (Acme and Globex)). Every wait is
// bounded. Prints one JSON line per step, then {"ok": true}, or
// {"ok": false, "step", "error", "panes"} on the first failure.
//
// Environment: BASE (http://host:port), TOKEN_ALICE, TOKEN_BOB, TOKEN_CAROL,
// TOKEN_DAVE, GLOBEX_DOC (id of a Globex document), ACME (Acme's tenant id),
// CHROMIUM (defaults to /usr/bin/chromium).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// Generous: the whole suite may be running beside this browser.
const WAIT = 15_000;
const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const say = (line) => console.log(JSON.stringify(line));
let step = 'launch';
const problems = [];

async function open(a, b) {
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  // (Refused writes are logged by Chromium as failed resource loads: expected.)
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  pages.push(page);
  await page.goto(`${env('BASE')}/#a=${a}&b=${b}`);
  return { a: page.locator('#pane-a'), b: page.locator('#pane-b') };
}

function check(what, condition) {
  if (!condition) throw new Error(what);
}
const docItem = (pane, title) => pane.locator('ul.documents li', { hasText: title });
const noteItem = (pane, title) => pane.locator('ul.notifications li', { hasText: title });
const shows = (item) => item.first().waitFor({ timeout: WAIT });
const gone = (item) => item.waitFor({ state: 'detached', timeout: WAIT });
// Everything the pane was ever sent (its event log keeps the last 200 lines).
const received = (pane) => pane.locator('ol.log').innerText();
async function neverReceived(pane, who, titles) {
  const log = await received(pane);
  for (const title of titles) check(`${who} was sent "${title}":\n${log}`, !log.includes(`"${title}"`));
}
async function refused(pane, status, needle) {
  const error = pane.locator('.error');
  await error.filter({ hasText: `(${status})` }).waitFor({ timeout: WAIT });
  const text = await error.innerText();
  check(`the refusal names ${needle}: ${text}`, text.includes(needle));
  return text;
}

async function run() {
  step = 'open both pages: each pane subscribes and lists its current rows';
  const one = await open(env('TOKEN_ALICE'), env('TOKEN_BOB'));
  const two = await open(env('TOKEN_CAROL'), env('TOKEN_DAVE'));
  const [alice, bob, carol, dave] = [one.a, one.b, two.a, two.b];
  // Seeing an initial row means the subscription is in place: every later
  // commit reaches it.
  await shows(docItem(alice, 'Acme roadmap'));
  await shows(noteItem(alice, 'Welcome to Acme'));
  await shows(docItem(bob, 'Acme roadmap'));
  await shows(noteItem(bob, 'Welcome to Acme'));
  await shows(docItem(carol, 'Globex plans'));
  await shows(noteItem(carol, 'Welcome to Globex'));
  await shows(docItem(dave, 'Acme roadmap'));
  await shows(docItem(dave, 'Globex plans'));
  say({ step });

  step = 'Alice creates a document in Acme: Alice, Bob and Dave are sent it';
  await alice.locator('form.create select.tenant').selectOption({ label: 'Acme' });
  await alice.locator('form.create input.title').fill("Alice's plan");
  await alice.locator('form.create input.body').fill('step one');
  await alice.locator('form.create button').click();
  for (const pane of [alice, bob, dave]) await shows(docItem(pane, "Alice's plan"));
  say({ step });

  step = 'Alice notifies herself: only her pane shows it';
  await alice.locator('form.notify select.recipient').selectOption({ label: 'Alice (you) · Acme' });
  await alice.locator('form.notify input.title').fill('Note to self');
  await alice.locator('form.notify button').click();
  await shows(noteItem(alice, 'Note to self'));
  const fromAlice = await noteItem(alice, 'Note to self').innerText();
  check(`the sender is named: ${fromAlice}`, fromAlice.includes('from Alice'));
  say({ step });

  step = "Alice notifies Bob, after her own note: Bob is sent his, and never was sent Alice's";
  await alice.locator('form.notify select.recipient').selectOption({ label: 'Bob · Acme' });
  await alice.locator('form.notify input.title').fill('Hi Bob');
  await alice.locator('form.notify button').click();
  await shows(noteItem(bob, 'Hi Bob'));
  // Bob's notifications arrive in commit order: had Alice's note been sent
  // to him, it would be in his log before "Hi Bob".
  await neverReceived(bob, 'Bob', ['Note to self']);
  check('Bob lists no note of Alice', (await noteItem(bob, 'Note to self').count()) === 0);
  say({ step });

  step = 'Bob marks his notification read';
  await noteItem(bob, 'Hi Bob').locator('button.mark-read').click();
  await bob.locator('ul.notifications li.read', { hasText: 'Hi Bob' }).waitFor({ timeout: WAIT });
  say({ step });

  step = "Bob edits Alice's document: Alice and Dave are sent the update";
  check('the edit form shows only while editing', await bob.locator('form.edit').isHidden());
  await docItem(bob, "Alice's plan").locator('button.edit').click();
  await bob.locator('form.edit input.title').fill('Bob edited this');
  await bob.locator('form.edit input.body').fill('step two');
  await bob.locator('form.edit button', { hasText: 'Save' }).click();
  await bob.locator('form.edit').waitFor({ state: 'hidden', timeout: WAIT });
  for (const pane of [alice, dave]) {
    await shows(docItem(pane, 'Bob edited this'));
    await gone(docItem(pane, "Alice's plan"));
    const text = await docItem(pane, 'Bob edited this').innerText();
    check(`the new text is shown: ${text}`, text.includes('step two'));
  }
  say({ step });

  step = 'Bob deletes it: it leaves Alice and Dave';
  await docItem(bob, 'Bob edited this').locator('button.delete').click();
  for (const pane of [alice, bob, dave]) await gone(docItem(pane, 'Bob edited this'));
  say({ step });

  step = "Bob tries to delete a Globex document by id: row-level security hides it, it is refused";
  await bob.locator('form.by-id input.id').fill(env('GLOBEX_DOC'));
  await bob.locator('form.by-id button').click();
  await refused(bob, 404, 'row-level security');
  say({ step });

  step = 'Carol tries to create a document in Acme: the policy refuses it';
  const options = await carol.locator('select.tenant option').allInnerTexts();
  check(`Carol's tenant picker offers Acme as another's tenant: ${options}`, options.includes('Acme'));
  await carol.locator('form.create select.tenant').selectOption(env('ACME'));
  await carol.locator('form.create input.title').fill('Sneaky');
  await carol.locator('form.create button').click();
  await refused(carol, 403, 'row-level security');
  say({ step });

  step = "Dave writes in Globex, then Alice in Acme: each tenant's panes are sent only their own";
  await dave.locator('form.create select.tenant').selectOption({ label: 'Globex' });
  await dave.locator('form.create input.title').fill('Globex memo');
  await dave.locator('form.create button').click();
  await shows(docItem(carol, 'Globex memo'));
  await shows(docItem(dave, 'Globex memo'));
  await alice.locator('form.create input.title').fill("Alice's last");
  await alice.locator('form.create button').click();
  for (const pane of [alice, bob, dave]) await shows(docItem(pane, "Alice's last"));
  // Commit order per subscription: Carol was sent Dave's memo after every
  // Acme write above, Alice and Bob were sent "Alice's last" after the memo.
  await neverReceived(carol, 'Carol', ['Acme roadmap', "Alice's plan", 'Bob edited this', 'Note to self', 'Hi Bob', 'Sneaky']);
  await neverReceived(alice, 'Alice', ['Globex memo', 'Globex plans', 'Hi Bob']);
  await neverReceived(bob, 'Bob', ['Globex memo', 'Globex plans', 'Note to self']);
  check('Carol still lists the Globex document', (await docItem(carol, 'Globex plans').count()) === 1);
  check(`no page error: ${problems}`, problems.length === 0);
  say({ step });
}

// A fresh profile: nothing from an earlier run (cookies, cache) counts.
const profile = mkdtempSync(join(tmpdir(), 'pgherald-browser-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const pages = [];
try {
  await run();
  say({ ok: true });
} catch (e) {
  const panes = {};
  for (const [i, page] of pages.entries()) {
    for (const name of ['a', 'b']) {
      panes[`page${i + 1}.${name}`] = await page.locator(`#pane-${name}`).innerText({ timeout: 1000 }).catch(String);
    }
  }
  say({ ok: false, step, error: String(e && e.stack || e), problems, panes });
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
