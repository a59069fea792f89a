// End-to-end test of `readyloop load --report FILE.html`: a real `--rate` run against the real
// server, stopped with SIGSTOP for half a second in the middle so the corrected and uncorrected
// latency lines part, then the page opened in headless Chromium. Checks that the page fetches
// nothing (every request but the file itself fails the test), runs no script, and renders each
// plot with its lines drawn; leaves a screenshot at target/load-report.png.
//
// Usage (from the repository root, after `cargo build`):
//   (cd tests/browser && npm ci) && node tests/browser/load_report.e2e.mjs
// The binary is $READYLOOP_BIN or target/debug/readyloop; Chromium is $CHROMIUM or
// /usr/bin/chromium (Debian's package).

import { launchChromium } from "./chromium.mjs";
import { spawn } from "node:child_process";
import { mkdirSync, existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.READYLOOP_BIN ?? join(root, "target/debug/readyloop");
const report = join(root, "target/load-report.html");
const screenshot = join(root, "target/load-report.png");

function startServer() {
  const server = spawn(binary, ["serve", "--http", "127.0.0.1:0", "--line", "off", "--hello", "off"], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  const addr = new Promise((resolveAddr, reject) => {
    server.on("error", reject);
    createInterface({ input: server.stdout }).on("line", (line) => {
      const m = /^listening http (\S+)$/.exec(line);
      if (m) resolveAddr(m[1]);
    });
  });
  return { server, addr };
}

function run(args) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("exit", (code) => resolveRun({ code, out, err }));
  });
}

async function main() {
  mkdirSync(dirname(report), { recursive: true });
  const { server, addr: addrPromise } = startServer();
  let browser;
  try {
    const addr = await addrPromise;
    // Stop the server for 0.5 s, 1.5 s into a 3.5 s run.
    const stall = setTimeout(() => {
      process.kill(server.pid, "SIGSTOP");
      setTimeout(() => process.kill(server.pid, "SIGCONT"), 500);
    }, 1500);
    const r = await run([
      "load", "http", "--url", `http://${addr}/healthz`, "--conns", "8", "--rate", "400",
      "--duration", "3.5", "--report", report, "--quiet",
    ]);
    clearTimeout(stall);
    if (r.code !== 0) throw new Error(`load exited ${r.code}: ${r.err}`);
    if (!existsSync(report)) throw new Error(`no report at ${report}`);
    if (/<script/i.test(readFileSync(report, "utf8"))) throw new Error("the report has a script");

    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 940, height: 900 } });
    const url = pathToFileURL(report).href;
    const fetched = [];
    page.on("request", (req) => { if (req.url() !== url) fetched.push(req.url()); });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    await page.goto(url, { waitUntil: "load" });
    if (fetched.length) throw new Error(`the page fetched ${JSON.stringify(fetched)}`);

    // Each plot is drawn: an SVG of real size with its lines (or bars) and their points.
    const plots = {
      "latency-percentiles": ["corrected (from intended send time)", "uncorrected (from actual send)"],
      "throughput": ["responses/s", "sent/s", "errors/s"],
      "latency-over-time": ["p99", "max"],
    };
    for (const [id, series] of Object.entries(plots)) {
      const svg = page.locator(`svg#${id}`);
      await svg.waitFor({ state: "visible", timeout: 10000 });
      const box = await svg.boundingBox();
      if (!box || box.width < 400 || box.height < 150) throw new Error(`#${id} is ${JSON.stringify(box)}`);
      for (const name of series) {
        const el = svg.locator(`[data-series="${name}"]`);
        if ((await el.count()) !== 1) throw new Error(`#${id} has no series ${name}`);
        const n = Number(await el.getAttribute("data-points"));
        if (!(n >= 2)) throw new Error(`#${id} ${name}: ${n} points`);
        const drawn = await el.evaluate((e) => {
          const b = e.getBBox();
          return e.tagName === "g" ? e.childElementCount : b.width;
        });
        if (!(drawn > 0)) throw new Error(`#${id} ${name} is not drawn`);
      }
    }
    // The stall parts the two percentile lines: the corrected one ends far higher (smaller y).
    const ends = await page.locator("svg#latency-percentiles polyline").evaluateAll((lines) =>
      lines.map((l) => l.points.getItem(l.points.numberOfItems - 1).y));
    const [corrected, uncorrected] = ends;
    if (!(corrected <= uncorrected)) throw new Error(`line ends ${ends}`);
    const params = await page.locator("#parameters").innerText();
    if (!params.includes("--rate 400")) throw new Error(`parameters: ${params}`);

    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`load report e2e: 3 plots drawn, nothing fetched; screenshot ${screenshot}`);
    console.log("load report e2e: 1 passed, 0 failed");
  } finally {
    if (browser) await browser.close();
    server.kill("SIGCONT");
    server.kill();
  }
}

const deadline = setTimeout(() => {
  console.error("load report e2e: timed out after 90 s");
  process.exit(1);
}, 90000);
main().then(
  () => { clearTimeout(deadline); process.exit(0); },
  (e) => {
    console.error(`load report e2e: FAILED: ${e.stack ?? e}`);
    console.log("load report e2e: 0 passed, 1 failed");
    process.exit(1);
  },
);
