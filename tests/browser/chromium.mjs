// Starts Debian's chromium through playwright-core (no browser download) with the flags this
// machine needs: no sandbox as root, and no background traffic to Google's hosts.
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-features=Translate,OptimizationHints,MediaRouter",
    ],
  });
}

/** Watches a page: every request it makes, console errors, uncaught errors, dialogs. */
export function watch(page) {
  const seen = { requests: [], errors: [], dialogs: [] };
  page.on("request", (r) => seen.requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error") seen.errors.push("console: " + m.text());
  });
  page.on("pageerror", (e) => seen.errors.push("page error: " + e.message));
  page.on("dialog", async (d) => {
    seen.dialogs.push(d.type() + ": " + d.message());
    await d.dismiss();
  });
  return seen;
}
