// A tenant, with only its API key and a browser, makes its own model: signs in, uploads a
// labelled CSV on the New model page, reads the preview, trains with autotune, follows the
// progress bar, reads the report, deploys, and then classifies through the API with its key.
// Started by crates/flywheel-cli/tests/selfserve.rs, which starts the server on a store with a
// tenant and its key.
//
// Environment: BASE_URL, TENANT_KEY, TENANT, CSV (the file to upload), BUDGET (seconds),
// MIN_F1, INPUTS, EXPECTED,
// CHROMIUM (default /usr/bin/chromium), SCREENSHOTS (a folder: save a picture of each page).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { env, launch } from "./chromium.mjs";

const BASE = env("BASE_URL");
const KEY = env("TENANT_KEY");
const TENANT = env("TENANT");
const CSV = env("CSV");
const BUDGET = env("BUDGET", "10");
// The held-out macro-F1 the model must reach, and texts to classify with their expected labels
// (JSON; no labels: only the answer's shape is checked).
const MIN_F1 = Number(env("MIN_F1", "0.8"));
const INPUTS = JSON.parse(env("INPUTS", '["w1 great w2", "awful w3 w4"]'));
const EXPECTED = JSON.parse(env("EXPECTED", '["pos", "neg"]'));
const SHOTS = process.env.SCREENSHOTS;

const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
page.setDefaultTimeout(30_000);
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("response", (r) => r.status() >= 500 && errors.push(`${r.status()} ${r.url()}`));
const step = (name) => console.log(`- ${name}`);
const shot = async (name) => {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `new-model-${name}.png`), fullPage: true });
};
const text = async (selector) => (await page.locator(selector).first().textContent()).trim();

try {
  step("sign in with the tenant's key and open New model");
  await page.goto(`${BASE}/new`);
  assert.match(page.url(), /\/login\?next=/);
  await page.getByLabel("Admin token or API key").fill(KEY);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${BASE}/new`);
  assert.equal(await text("h1"), "New model");
  assert.match(await text(".who span"), new RegExp(`tenant ${TENANT}`));

  step("upload a CSV and read its preview");
  await page.getByLabel("File").setInputFiles(CSV);
  await page.getByLabel("Name", { exact: true }).fill("reviews");
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#datasets tbody tr").first().waitFor();
  const row = page.locator("#datasets tbody tr").first();
  assert.match(await row.textContent(), /reviews v1/);
  assert.match(await row.textContent(), /binary|multiclass/);
  assert.ok((await row.locator(".tag").count()) >= 2, "the labels are counted");
  await shot("uploaded");

  step("a bad file is refused with its line, and nothing is stored");
  await page.getByLabel("File").setInputFiles({
    name: "broken.csv",
    mimeType: "text/csv",
    buffer: Buffer.from("text,label\nfine,pos\nbroken,neg,extra\n"),
  });
  await page.getByLabel("Name", { exact: true }).fill("broken");
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#upload-status.error").waitFor();
  assert.match(await text("#upload-status"), /line 3/);
  assert.equal(await page.locator("#datasets tbody tr").count(), 1);

  step(`train with autotune for ${BUDGET} s and follow the progress bar`);
  await page.getByLabel("Model", { exact: true }).selectOption("autotune");
  await page.getByLabel("Budget (seconds)").fill(BUDGET);
  await page.getByLabel("Model name").fill("my-reviews");
  await page.getByRole("button", { name: "Train" }).click();
  await page.waitForURL(/\/jobs\/job_/);
  const moved = await page.waitForFunction(
    () => Number(document.getElementById("job-progress")?.value ?? 0) > 0,
    null,
    { timeout: 60_000 },
  );
  assert.ok(moved, "the progress bar moves");
  await shot("training");
  await page.locator("#job-result").waitFor({ timeout: 180_000 });
  assert.match(await text("#job-state"), /succeeded/);
  const f1 = Number((await text("#job-result strong")).trim());
  assert.ok(f1 > MIN_F1, `held-out macro-F1 ${f1}`);
  console.log(`  held-out macro-F1 ${f1}: ${await text("#job-result")}`);
  await shot("trained");

  step("read the report");
  const [report] = await Promise.all([
    page.waitForEvent("popup").catch(() => null),
    page.getByRole("link", { name: "Read the evaluation report" }).click(),
  ]);
  const reportPage = report ?? page;
  await reportPage.waitForLoadState();
  assert.match(await reportPage.title(), /flywheel report/);
  assert.ok((await reportPage.locator("svg").count()) > 0, "the report has charts");
  if (!report) await page.goBack();

  step("deploy, then classify through the API with the key");
  await page.getByRole("button", { name: /Deploy version 1/ }).click();
  await page.waitForURL(/\/models\/my-reviews/);
  assert.match(await text("main"), /champion/i);
  const answer = await page.evaluate(
    async ({ key, inputs }) => {
      const r = await fetch("/v1/classify", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "my-reviews", inputs }),
      });
      return { status: r.status, body: await r.json() };
    },
    { key: KEY, inputs: INPUTS },
  );
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const labels = answer.body.predictions.map((p) => p.label);
  console.log(`  classified through the API: ${JSON.stringify(labels)}`);
  if (EXPECTED.length) assert.deepEqual(labels, EXPECTED);

  step("the job is listed with its state");
  await page.goto(`${BASE}/new`);
  assert.match(await text("#jobs tbody tr"), /succeeded/);
  await shot("jobs");

  assert.deepEqual(errors, [], "no script or server errors");
  console.log("new model: all checks passed");
} finally {
  await browser.close();
}
