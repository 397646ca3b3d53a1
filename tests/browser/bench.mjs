// The explorer's weight and speed in headless chromium, against `swarmvm demo --explore`:
//   node tests/browser/bench.mjs target/release/swarmvm [--runs 10] [--live] [--screenshot FILE]
// (--live: `demo --live --explore`, a sequencer and following peers).
// For each run, a fresh browser context (empty cache) opens peer1's page at #state and
// waits for the demo's state on screen (the state root in the overview's data and student
// S001's row). Prints the bytes transferred (every response, headers included, the event
// stream up to that moment) and the time from navigation start, as the median and the worst.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { launch } from "./chromium.mjs";

const args = process.argv.slice(2);
const binary = args[0];
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i > 0 ? args[i + 1] : fallback;
};
const runs = Number(option("--runs", "10"));
const screenshot = option("--screenshot", null);
const live = args.includes("--live");
if (!binary) {
  console.error("usage: node bench.mjs PATH/TO/swarmvm [--runs N] [--live] [--screenshot FILE]");
  process.exit(2);
}

const demoArgs = ["demo", "--explore", "--json", "--peers", "3"].concat(live ? ["--live"] : []);
const demo = spawn(binary, demoArgs, { stdio: ["ignore", "pipe", "inherit"] });
const urls = {};
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("demo --explore printed no addresses in 60 s")), 60_000);
  createInterface({ input: demo.stdout }).on("line", (line) => {
    const v = JSON.parse(line);
    if (v.event === "explorer") urls[v.peer] = v.url;
    if (urls.peer3) { clearTimeout(timer); resolve(); }
  });
  demo.on("exit", (code) => reject(new Error("demo exited " + code)));
});

const browser = await launch();
const bytes = [];
const times = [];
try {
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    let transferred = 0;
    const streaming = new Map();
    cdp.on("Network.loadingFinished", (e) => { transferred += e.encodedDataLength; streaming.delete(e.requestId); });
    cdp.on("Network.dataReceived", (e) => {
      streaming.set(e.requestId, (streaming.get(e.requestId) || 0) + e.encodedDataLength);
    });
    await page.goto(urls.peer1 + "#state", { waitUntil: "commit" });
    const at = await page.waitForFunction(() => {
      const root = document.querySelector('[data-field="state_root"]');
      const row = document.querySelector('#state tbody tr[data-id="S001"]');
      return root && root.textContent.length === 64 && row ? performance.now() : false;
    }, null, { polling: "raf", timeout: 30_000 });
    times.push(await at.jsonValue());
    for (const n of streaming.values()) transferred += n;
    bytes.push(transferred);
    if (screenshot && i === 0) {
      await page.evaluate(() => { location.hash = "#overview"; });
      await page.waitForTimeout(2500);
      await page.screenshot({ path: screenshot });
    }
    await context.close();
  }
} finally {
  await browser.close();
  demo.kill("SIGINT");
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const kib = (n) => (n / 1024).toFixed(1) + " KiB";
console.log(`explorer first load, ${demoArgs.join(" ")}, ${runs} runs (fresh context, cache off):`);
console.log(`  transferred  median ${kib(median(bytes))}, largest ${kib(Math.max(...bytes))}`);
console.log(`  demo state on screen  median ${median(times).toFixed(0)} ms, slowest ${Math.max(...times).toFixed(0)} ms after navigation start`);
