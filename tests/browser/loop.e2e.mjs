// End-to-end test of the live loop page (GET /loop, `serve --inspect`) in headless Chromium
// against the real server: drive line traffic (clients that echo, one that stops reading so its
// output queue grows and WRITABLE is armed), then check that the page shows the numbers the
// server reports in /stats within one refresh (counted in frames, not in seconds), that the
// slab strip and the charts are drawn, and that the sampled trace log has the loop's own lines.
//
// Usage (from the repository root, after `cargo build`):
//   (cd tests/browser && npm ci) && node tests/browser/loop.e2e.mjs [--update-docs]
// The server binary is $READYLOOP_BIN or target/debug/readyloop; Chromium is $CHROMIUM or
// /usr/bin/chromium. Leaves a screenshot at target/loop-page.png; with --update-docs also at
// docs/img/loop-page.png, the one docs/guide.md shows.

import { launchChromium } from "./chromium.mjs";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.READYLOOP_BIN ?? join(root, "target/debug/readyloop");
const screenshot = join(root, "target/loop-page.png");
const docsShot = join(root, "docs/img/loop-page.png");

function startServer() {
  const server = spawn(
    binary,
    ["serve", "--inspect", "--http", "127.0.0.1:0", "--line", "127.0.0.1:0", "--hello", "off",
      "--upload-dir", join(root, "target/loop-e2e-uploads")],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const addrs = {};
  const ready = new Promise((resolveAddrs, reject) => {
    server.on("error", reject);
    server.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: server.stdout }).on("line", (line) => {
      const m = /^listening (http|line) (\S+)$/.exec(line);
      if (m) addrs[m[1]] = m[2];
      if (addrs.http && addrs.line) resolveAddrs(addrs);
    });
  });
  return { server, ready };
}

// A line client that sends `line` and resolves once it is echoed.
function lineClient(addr, line) {
  const [host, port] = addr.split(":");
  return new Promise((resolveClient, reject) => {
    const s = connect({ host, port: Number(port) }, () => s.write(line));
    let got = "";
    s.on("data", (d) => { got += d; if (got === line) resolveClient(s); });
    s.on("error", reject);
  });
}

// A client that sends 16 MiB of lines and never reads the echoes: the server's writes to it
// come up short, WRITABLE is armed, its queue grows and reading it pauses.
function stuckClient(addr) {
  const [host, port] = addr.split(":");
  const s = connect({ host, port: Number(port) });
  s.pause();
  const chunk = Buffer.from("x".repeat(1023) + "\n");
  for (let i = 0; i < 16 * 1024; i++) s.write(chunk);
  s.on("error", () => {});
  return s;
}

const text = (page, id) => page.locator("#" + id).textContent();

async function main() {
  const { server, ready } = startServer();
  let browser;
  const sockets = [];
  try {
    const addrs = await ready;
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    const socket = page.waitForEvent("websocket", { timeout: 10000 });
    await page.goto(`http://${addrs.http}/loop`);
    const wsUrl = (await socket).url();
    if (wsUrl !== `ws://${addrs.http}/loop/ws`) throw new Error(`page opened ${wsUrl}`);
    await page.locator("#status", { hasText: /^live$/ }).waitFor({ timeout: 10000 });

    // Traffic: eight echoing clients kept open, one that stops reading.
    for (let i = 0; i < 8; i++) sockets.push(await lineClient(addrs.line, `hello ${i}\n`));
    sockets.push(stuckClient(addrs.line));
    await page.waitForFunction(() => document.getElementById("write_armed").textContent === "1",
      null, { timeout: 10000 });

    // /stats now; the page must show the same within one refresh: the frame in flight when
    // /stats answered may predate it, the one after may not.
    const stats = await (await fetch(`http://${addrs.http}/stats`)).json();
    const framesAtStats = Number(await text(page, "frames"));
    const want = {
      accepted_total: String(stats.accepted_total),
      conn_line: String(stats.connections.line),
      conn_ws: String(stats.connections.ws),
      conn_http: String(stats.connections.http),
    };
    const shown = async () => Object.fromEntries(
      await Promise.all(Object.keys(want).map(async (id) => [id, await text(page, id)])));
    await page.waitForFunction((w) => Object.entries(w).every(
      ([id, v]) => document.getElementById(id).textContent === v), want, { timeout: 10000 })
      .catch(async () => {
        throw new Error(`page shows ${JSON.stringify(await shown())}, /stats says ${JSON.stringify(want)}`);
      });
    const framesTaken = Number(await text(page, "frames")) - framesAtStats;
    if (framesTaken > 2) throw new Error(`the page needed ${framesTaken} frames to show /stats`);
    if (want.conn_line !== "9") throw new Error(`/stats counts ${want.conn_line} line connections`);

    // The slab strip counts the line clients, the stuck one write-blocked.
    await page.waitForFunction(() => /line write blocked/.test(document.getElementById("strip_note").textContent),
      null, { timeout: 10000 });
    const note = await text(page, "strip_note");
    if (!/\b(8|7) line reading\b/.test(note)) throw new Error(`strip note: ${note}`);
    // The sampled trace log has the loop's own wording.
    await page.locator("#log li", { hasText: /^conn \d+ .*(read|write|event|interest)/ }).first()
      .waitFor({ timeout: 10000 });
    const queued = await text(page, "queued_bytes");
    if (!/MiB|KiB/.test(queued)) throw new Error(`queued bytes shown as ${queued}`);

    // Traffic for the picture: the echoing clients send a line every 10 ms each for 3 s, and
    // new clients come and go, so the charts show a loop at work.
    const echoers = sockets.slice(0, 8);
    const beat = setInterval(() => {
      for (const s of echoers) s.write("tick\n");
      lineClient(addrs.line, "passing by\n").then((s) => s.end(), () => {});
    }, 10);
    await page.waitForTimeout(3000);
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    clearInterval(beat);
    if (process.argv.includes("--update-docs")) {
      mkdirSync(dirname(docsShot), { recursive: true });
      copyFileSync(screenshot, docsShot);
    }
    console.log(`loop e2e: /stats ${JSON.stringify(want)} shown within ${framesTaken} frame(s); screenshot ${screenshot}`);
    console.log("loop e2e: 1 passed, 0 failed");
  } finally {
    for (const s of sockets) s.destroy();
    if (browser) await browser.close();
    server.kill();
  }
}

const deadline = setTimeout(() => {
  console.error("loop e2e: timed out after 90 s");
  process.exit(1);
}, 90000);
main().then(
  () => { clearTimeout(deadline); process.exit(0); },
  (e) => { console.error(`loop e2e: FAILED: ${e.stack ?? e}`); console.log("loop e2e: 0 passed, 1 failed"); process.exit(1); },
);
