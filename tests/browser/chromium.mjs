// What the browser walk-throughs share: reading their environment and starting Debian's
// headless Chromium with the flags that keep it off the network.
import { chromium } from "playwright-core";

/** The environment variable `name`, or `fallback`; throws when neither is there. */
export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

/** Headless Chromium (CHROMIUM, default /usr/bin/chromium); nothing but loopback is reachable. */
export const launch = () =>
  chromium.launch({
    executablePath: env("CHROMIUM", "/usr/bin/chromium"),
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
