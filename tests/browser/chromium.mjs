// The one way the browser tests start Chromium: headless, $CHROMIUM or /usr/bin/chromium
// (Debian's package), with the flags this closed network needs (no background networking, no
// component updates or sync, no QUIC: otherwise Chromium keeps dialling Google's hosts and the
// machine refuses each connection).

import { chromium } from "playwright-core";

export const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Launches headless Chromium with the common flags and `extraArgs` after them. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extraArgs,
    ],
    timeout: 30000,
  });
}
