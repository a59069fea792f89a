// End-to-end test of the chat page served at GET /: two headless Chromium pages against the
// real server; a message typed in one page appears in both, with the broadcast prefix.
//
// Usage (from the repository root, after `cargo build`):
//   (cd tests/browser && npm ci) && node tests/browser/chat.e2e.mjs [--tls]
// With --tls the server serves https (a self-signed certificate made with `openssl req` for
// the run; Chromium runs with --ignore-certificate-errors) and the page must talk over wss://.
// The server binary is $READYLOOP_BIN or target/debug/readyloop; Chromium is $CHROMIUM or
// /usr/bin/chromium (Debian's package). Leaves a screenshot at target/chat.png.

import { launchChromium } from "./chromium.mjs";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.READYLOOP_BIN ?? join(root, "target/debug/readyloop");
const tls = process.argv.includes("--tls");
const screenshot = join(root, tls ? "target/chat-tls.png" : "target/chat.png");
const PREFIX = "📢 새로운 알림: ";

// A self-signed certificate for localhost in `dir`: the --tls-cert/--tls-key flags.
function selfSigned(dir) {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext", "basicConstraints=critical,CA:FALSE",
  ], { stdio: "ignore" });
  return ["--tls-cert", cert, "--tls-key", key];
}

function startServer(uploads) {
  const tlsFlags = tls ? selfSigned(uploads) : [];
  const server = spawn(
    binary,
    ["serve", "--http", "127.0.0.1:0", "--line", "off", "--hello", "off", "--upload-dir", uploads,
      ...tlsFlags],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const addr = new Promise((resolveAddr, reject) => {
    server.on("error", reject);
    server.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: server.stdout }).on("line", (line) => {
      const m = /^listening https? (\S+)$/.exec(line);
      if (m) resolveAddr(m[1]);
    });
  });
  return { server, addr };
}

async function logTexts(page) {
  return page.locator("#log li").allTextContents();
}

async function main() {
  const uploads = mkdtempSync(join(tmpdir(), "readyloop-e2e-"));
  const { server, addr: addrPromise } = startServer(uploads);
  let browser;
  try {
    const addr = await addrPromise;
    browser = await launchChromium(tls ? ["--ignore-certificate-errors"] : []);
    // Two contexts: two independent browser sessions, as two users would be.
    const pages = [];
    for (let i = 0; i < 2; i++) {
      const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
      const page = await context.newPage();
      page.on("pageerror", (e) => { throw new Error(`page ${i} error: ${e.message}`); });
      // Watch the page's WebSocket: over https it must be wss://.
      const socket = page.waitForEvent("websocket", { timeout: 10000 });
      await page.goto(`${tls ? "https" : "http"}://${addr}/`);
      const wsUrl = (await socket).url();
      const wantWs = `${tls ? "wss" : "ws"}://${addr}/ws`;
      if (wsUrl !== wantWs) throw new Error(`page ${i} opened ${wsUrl}, want ${wantWs}`);
      await page.locator("#status", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
      // Chromium offers permessage-deflate on every WebSocket; the server must accept it
      // (with no context takeover either way, RFC 7692 §7.1.1).
      const extensions = await page.evaluate(() => ws.extensions);
      if (!/^permessage-deflate\b/.test(extensions) ||
          !extensions.includes("server_no_context_takeover") ||
          !extensions.includes("client_no_context_takeover")) {
        throw new Error(`page ${i}: ws.extensions is ${JSON.stringify(extensions)}`);
      }
      pages.push(page);
    }
    const [a, b] = pages;
    // The third is long enough (over --ws-deflate-min) to be broadcast compressed.
    const long = "a longer line that deflate shrinks, 안녕하세요 again and again. ".repeat(8);
    const sends = [[a, "안녕하세요 from page A"], [b, "hello from page B <b>not bold</b>"], [a, long]];
    for (const [page, text] of sends) {
      await page.fill("#msg", text);
      await page.press("#msg", "Enter");
      for (const [i, p] of pages.entries()) {
        await p.locator("#log li", { hasText: PREFIX + text }).first()
          .waitFor({ timeout: 10000 })
          .catch(async () => {
            throw new Error(`page ${i} never showed ${JSON.stringify(text)}; log: ` +
              JSON.stringify(await logTexts(p)));
          });
      }
      if ((await page.inputValue("#msg")) !== "") throw new Error("the input was not cleared");
    }
    // Exactly the two messages, in order, on both pages (and no HTML injection).
    const want = sends.map(([, text]) => PREFIX + text);
    for (const [i, p] of pages.entries()) {
      const got = await logTexts(p);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(`page ${i} log is ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      }
      if ((await p.locator("#log b").count()) !== 0) throw new Error("message rendered as HTML");
    }
    mkdirSync(dirname(screenshot), { recursive: true });
    await a.screenshot({ path: screenshot, fullPage: true });
    const over = tls ? "https + wss" : "http + ws";
    console.log(`chat e2e (${over}, permessage-deflate): 2 pages, ${want.length} messages seen on both; screenshot ${screenshot}`);
    console.log("chat e2e: 1 passed, 0 failed");
  } finally {
    if (browser) await browser.close();
    server.kill();
    rmSync(uploads, { recursive: true, force: true });
  }
}

const deadline = setTimeout(() => {
  console.error("chat e2e: timed out after 90 s");
  process.exit(1);
}, 90000);
main().then(
  () => { clearTimeout(deadline); process.exit(0); },
  (e) => { console.error(`chat e2e: FAILED: ${e.stack ?? e}`); console.log("chat e2e: 0 passed, 1 failed"); process.exit(1); },
);
