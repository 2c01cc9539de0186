// Drives the dashboard in headless Chromium against a running server and asserts on what the
// pages show. Started by crates/flywheel-cli/tests/dashboard.rs, which prepares the store
// (a model with two versions, logged predictions, a tenant with a key) and the server.
//
// Environment: BASE_URL, ADMIN_TOKEN, TENANT_KEY, TENANT, OTHER_TENANT, PLAN, MODEL,
// CHROMIUM (default /usr/bin/chromium), SCREENSHOTS (a folder: save a picture of each page).
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { env, launch } from "./chromium.mjs";

const BASE = env("BASE_URL");
const ADMIN = env("ADMIN_TOKEN");
const TENANT_KEY = env("TENANT_KEY");
const TENANT = env("TENANT");
const OTHER = env("OTHER_TENANT");
const PLAN = env("PLAN");
const MODEL = env("MODEL");
const SHOTS = process.env.SCREENSHOTS;
const MAX_PAGE_BYTES = 200 * 1024;

const browser = await launch();
const context = await browser.newContext({
  viewport: { width: 1280, height: 800 },
  acceptDownloads: true,
});
const page = await context.newPage();
page.setDefaultTimeout(20_000);
// Script errors and server errors; the 401 of the wrong sign-in is expected.
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.on("response", (r) => r.status() >= 500 && consoleErrors.push(`${r.status()} ${r.url()}`));

const step = (name) => console.log(`- ${name}`);
const shot = async (name, fullPage = true) => {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `dashboard-${name}.png`), fullPage });
};
const text = async (selector) => (await page.locator(selector).first().textContent()).trim();
const number = async (selector) => Number((await text(selector)).replace(/,/g, ""));

/** Bytes the current page loaded (document and everything it pulled in). */
async function pageWeight() {
  return page.evaluate(() =>
    performance
      .getEntries()
      .filter((e) => e.entryType === "navigation" || e.entryType === "resource")
      .reduce((sum, e) => sum + (e.decodedBodySize || 0), 0),
  );
}

/** Every visible form control has a label, and the page weighs under 200 KB. */
async function checkPage(name) {
  const unlabelled = await page.evaluate(() =>
    Array.from(document.querySelectorAll("input, select, textarea"))
      .filter((el) => el.type !== "hidden")
      .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label"))
      .map((el) => el.outerHTML),
  );
  assert.deepEqual(unlabelled, [], `${name}: form controls without a label`);
  const weight = await pageWeight();
  assert.ok(weight > 0 && weight < MAX_PAGE_BYTES, `${name} weighs ${weight} bytes`);
  console.log(`  ${name}: ${weight} bytes`);
}

async function signIn(token) {
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /\/login\?next=/, "signed-out visitors are sent to the sign-in page");
  await page.getByLabel("Admin token or API key").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${BASE}/`);
}

try {
  step("sign in with a wrong token, then the admin token");
  await page.goto(`${BASE}/login`);
  await checkPage("login");
  await shot("login", false);
  await page.getByLabel("Admin token or API key").fill("not-a-valid-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  assert.match(await text("[role=alert]"), /not valid/);
  await signIn(ADMIN);
  assert.equal(await text("h1"), "Models");
  assert.equal(await text(".who span"), "admin");
  const modelRow = page.locator("tbody tr", { has: page.getByRole("link", { name: MODEL, exact: true }) });
  assert.equal(await modelRow.count(), 1, "the model is listed");
  await checkPage("models");
  await shot("models");

  step("model page: versions, curves, confusion matrix");
  await page.getByRole("link", { name: MODEL, exact: true }).click();
  assert.equal(await text("h1"), `Model ${MODEL}`);
  assert.ok((await page.locator("figure.chart svg polyline").count()) >= 2, "learning curves drawn");
  assert.ok((await page.locator("table.confusion td").count()) >= 4, "confusion matrix shown");
  await checkPage("model");
  await shot("model");

  step("model page: the drift monitor; the operator audits the base data");
  assert.match(await text("#drift-state"), /texts observed/);
  await page.getByRole("button", { name: "Audit the base data" }).click();
  assert.equal(await text("h1"), `Label audit of ${MODEL}`);
  assert.match(await text("main"), /Estimated label noise per class/);
  await checkPage("audit");
  await page.goto(`${BASE}/models/${MODEL}`);

  step("try it: label, scores and highlighted tokens (English, then Chinese)");
  await page.getByRole("link", { name: "Try it" }).click();
  const english = "what a wonderful happy day, I love it";
  await page.getByLabel("Text (English, Chinese, …)").fill(english);
  await page.getByRole("button", { name: "Classify and explain" }).click();
  await page.locator("#label").waitFor();
  assert.ok((await text("#label")).length > 0, "a label is shown");
  assert.equal(await text(".tokens"), english, "the highlighted text is the text typed");
  const marks = page.locator(".tokens mark");
  assert.ok((await marks.count()) >= 5, "tokens are highlighted");
  const pulls = await marks.evaluateAll((ms) => ms.map((m) => Number(m.dataset.attribution)));
  assert.ok(pulls.some((a) => a !== 0), "some token has a non-zero attribution");
  assert.ok((await page.locator("table.scores tr").count()) >= 2, "every label's score is shown");
  await checkPage("try");
  await shot("try");
  const chinese = "今天天气很好，我很开心";
  await page.getByLabel("Text (English, Chinese, …)").fill(chinese);
  await page.getByRole("button", { name: "Classify and explain" }).click();
  await page.waitForFunction((t) => document.querySelector(".tokens")?.textContent === t, chinese);
  assert.ok((await page.locator(".tokens mark").count()) >= 2, "Chinese tokens are highlighted");

  step("review: label two items with the keyboard");
  await page.getByRole("link", { name: "Review" }).click();
  const waiting = await number("#waiting");
  const items = page.locator("#queue li.item");
  const before = await items.count();
  assert.ok(waiting >= 3 && before >= 3, `the queue has items (${waiting} waiting)`);
  await checkPage("review");
  await shot("review", false);
  const firstText = await items.nth(0).locator(".text").textContent();
  const secondText = await items.nth(1).locator(".text").textContent();
  assert.equal(await items.nth(0).getAttribute("aria-selected"), "true");
  await page.keyboard.press("1");
  await page.waitForFunction(() => document.getElementById("done").textContent === "1");
  assert.equal(await number("#waiting"), waiting - 1);
  assert.equal(await items.count(), before - 1);
  // The next item is selected; arrow keys move and come back.
  assert.equal(await items.nth(0).locator(".text").textContent(), secondText);
  await page.keyboard.press("ArrowDown");
  assert.equal(await items.nth(1).getAttribute("aria-selected"), "true");
  await page.keyboard.press("ArrowUp");
  assert.equal(await items.nth(0).getAttribute("aria-selected"), "true");
  await page.keyboard.press("2");
  await page.waitForFunction(() => document.getElementById("done").textContent === "2");
  assert.equal(await number("#waiting"), waiting - 2);
  await page.reload();
  assert.equal(await number("#waiting"), waiting - 2, "the labels were stored");
  const remaining = await items.locator(".text").allTextContents();
  assert.ok(!remaining.includes(firstText) && !remaining.includes(secondText));

  step("promote another version, then roll back");
  await page.goto(`${BASE}/models/${MODEL}`);
  const versionRow = (v) =>
    page.locator("tbody tr", { has: page.getByRole("link", { name: `v${v}`, exact: true }) });
  const isChampion = async (v) => (await versionRow(v).locator(".badge.champion").count()) === 1;
  const championNow = async () => {
    const badge = page.locator("tbody tr", { has: page.locator(".badge.champion") });
    return Number((await badge.locator("th a").textContent()).slice(1));
  };
  const original = await championNow();
  const promote = page.getByRole("button", { name: /^Promote version \d+$/ }).first();
  const other = Number((await promote.getAttribute("aria-label")).replace(/\D+/g, ""));
  assert.notEqual(other, original);
  await promote.click();
  assert.match(await text("[role=status]"), new RegExp(`Version ${other} is now the champion`));
  assert.ok(await isChampion(other));
  assert.ok(!(await isChampion(original)));
  await page.getByRole("link", { name: "Models" }).click();
  assert.equal(await modelRow.locator("td").first().textContent(), String(other), "the promoted version is served");
  await page.goto(`${BASE}/models/${MODEL}`);
  await page.getByRole("button", { name: "Roll back the champion" }).click();
  assert.match(await text("[role=status]"), new RegExp(`version ${original} is the champion again`));
  assert.ok(await isChampion(original));
  assert.match(await text("#history ~ div table tbody tr"), /rollback/);
  await page.getByRole("link", { name: "Models" }).click();
  assert.equal(await modelRow.locator("td").first().textContent(), String(original), "served again");

  step("keys: create one (shown once), then revoke it");
  await page.getByRole("link", { name: "Keys" }).click();
  await page.getByLabel("Tenant", { exact: true }).selectOption(TENANT);
  await page.getByLabel("Plan").selectOption(PLAN);
  await page.getByRole("button", { name: "Create key" }).click();
  const key = await text("#new-key");
  assert.match(key, /^fw_[A-Za-z0-9_-]{20,}$/);
  const prefix = key.slice(0, 11);
  const row = page.locator(`tr[data-prefix="${prefix}"]`);
  assert.equal(await row.locator(".status").textContent(), "active");
  await checkPage("keys");
  await shot("keys");
  await page.goto(`${BASE}/keys`);
  assert.equal(await page.locator("#new-key").count(), 0, "the key is not shown again");
  assert.ok(!(await page.content()).includes(key), "the secret is nowhere on the page");
  await page.getByRole("button", { name: `Revoke key ${prefix}` }).click();
  assert.match(await text("[role=status]"), new RegExp(`Key ${prefix} is revoked`));
  assert.match(await row.locator(".status").textContent(), /^revoked/);

  step("usage: chart, rows and CSV export");
  await page.getByRole("link", { name: "Usage" }).click();
  await page.getByLabel("By", { exact: true }).selectOption("key");
  await page.getByRole("button", { name: "Show" }).click();
  assert.match(await text("figure.chart figcaption"), /per day by key/);
  assert.ok((await page.locator("figure.chart svg rect").count()) >= 1, "the chart has bars");
  const usageRows = await page.locator("#usage-rows tbody tr").count();
  assert.ok(usageRows >= 1);
  assert.ok((await page.locator("#usage-rows").textContent()).includes(TENANT));
  await checkPage("usage");
  await shot("usage");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Export CSV" }).click(),
  ]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert.equal(csv[0], "tenant,key_prefix,model,day,requests,texts,characters,training_seconds");
  assert.equal(csv.length - 1, usageRows, "the CSV holds the rows the page shows");
  assert.ok(csv.slice(1).some((l) => l.startsWith(`${TENANT},`)));

  step("a tenant's key sees only its tenant");
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(TENANT_KEY);
  assert.match(await text(".who span"), new RegExp(`tenant ${TENANT}`));
  await page.getByRole("link", { name: "Keys" }).click();
  assert.ok(!(await page.content()).includes(`Tenant ${OTHER}`), "no other tenant's keys");
  assert.equal(await page.getByRole("button", { name: "Create tenant" }).count(), 0);
  await page.getByRole("link", { name: "Usage" }).click();
  const tenants = await page.locator("#usage-rows tbody tr td:nth-child(2)").allTextContents();
  assert.ok(tenants.length > 0 && tenants.every((t) => t === TENANT), "only its own usage");
  await page.goto(`${BASE}/models/${MODEL}`);
  assert.equal(await page.getByRole("button", { name: /Promote/ }).count(), 0, "no promote button");

  assert.deepEqual(consoleErrors, [], "no script or server errors");
  console.log("dashboard: all checks passed");
} finally {
  await browser.close();
}
