// Drive Debian's headless Chromium with playwright-core (from js/node_modules;
// never a browser download) for tests/browser/browser_driver.py.
//
// Newline-delimited JSON. In on stdin: {"id": n, "cmd": ..., ...}; out on
// stdout: {"id": n, "ok": true, "value": ...} or {"id": n, "ok": false,
// "error": "..."}, plus {"event": "ready"} once the browser runs and
// {"event": "console", "page": ..., "text": ...} for page console lines.
//
// Commands: newPage {page, context?}  goto {page, url}  evaluate {page, js}
// (an expression, awaited)  waitFor {page, js, timeout}  fill {page,
// selector, text}  press {page, selector, key}  click {page, selector}
// screenshot {page, path}  closePage {page}  serveFiles {url, dir, context?}
// (requests under the URL prefix `url` answered from the folder `dir`, in
// the browser, never reaching the network: e.g. npm packages for a page)
// exit.

import { mkdtempSync, rmSync, statSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join, resolve, sep } from "node:path"
import { createInterface } from "node:readline"

const require = createRequire(new URL("../../js/package.json", import.meta.url))
const { chromium } = require("playwright-core")

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium"
// Stay off the network: this machine has none, and tests are loopback only.
const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]

function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n")
}

// A fresh profile per run (launchPersistentContext is how playwright takes
// --user-data-dir); further contexts (separate cookie jars, e.g. two users)
// come from a second browser on its own fresh profile.
const profiles = []
const contexts = new Map()
async function context(name = "default") {
  if (!contexts.has(name)) {
    const dir = mkdtempSync(join(tmpdir(), "trio-cable-chromium-"))
    profiles.push(dir)
    const ctx = await chromium.launchPersistentContext(dir, {
      executablePath,
      args,
      headless: true,
      viewport: { width: 900, height: 700 },
    })
    contexts.set(name, ctx)
  }
  return contexts.get(name)
}

const pages = new Map()
function page(name) {
  const found = pages.get(name)
  if (!found) throw new Error(`no page ${name}`)
  return found
}

const commands = {
  async newPage({ page: name, context: ctxName }) {
    const ctx = await context(ctxName)
    const created = ctx.pages().find((p) => p.url() === "about:blank" && ![...pages.values()].includes(p)) ?? (await ctx.newPage())
    created.on("console", (msg) => emit({ event: "console", page: name, text: msg.text() }))
    created.on("pageerror", (err) => emit({ event: "console", page: name, text: `pageerror: ${err.message}` }))
    pages.set(name, created)
  },
  async goto({ page: name, url }) {
    await page(name).goto(url, { waitUntil: "load" })
  },
  async evaluate({ page: name, js }) {
    return await page(name).evaluate(`(async () => (${js}))()`)
  },
  async waitFor({ page: name, js, timeout = 5000 }) {
    await page(name).waitForFunction(js, undefined, { timeout, polling: 50 })
  },
  async fill({ page: name, selector, text }) {
    await page(name).locator(selector).fill(text)
  },
  async press({ page: name, selector, key }) {
    await page(name).locator(selector).press(key)
  },
  async click({ page: name, selector }) {
    await page(name).locator(selector).click()
  },
  async screenshot({ page: name, path }) {
    await page(name).screenshot({ path, fullPage: true })
  },
  async serveFiles({ url, dir, context: ctxName }) {
    const root = resolve(dir)
    await (await context(ctxName)).route(
      (target) => target.href.startsWith(url),
      async (route) => {
        const rel = decodeURIComponent(new URL(route.request().url()).pathname.slice(new URL(url).pathname.length))
        const path = resolve(root, rel)
        if (!path.startsWith(root + sep)) return route.fulfill({ status: 403, body: "outside the served folder" })
        if (!statSync(path, { throwIfNoEntry: false })?.isFile()) return route.fulfill({ status: 404, body: `no ${rel}` })
        const contentType = /\.m?js$/.test(path) ? "text/javascript" : undefined
        await route.fulfill({ path, contentType })
      },
    )
  },
  async closePage({ page: name }) {
    await page(name).close()
    pages.delete(name)
  },
  async exit() {
    await shutdown()
    process.exit(0)
  },
}

async function shutdown() {
  for (const ctx of contexts.values()) await ctx.close().catch(() => {})
  for (const dir of profiles) rmSync(dir, { recursive: true, force: true })
}

await context()
emit({ event: "ready" })

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  const { id, cmd, ...params } = JSON.parse(line)
  // Run commands one at a time, in order: the test reads each reply.
  try {
    const value = await commands[cmd](params)
    emit({ id, ok: true, value: value ?? null })
  } catch (error) {
    emit({ id, ok: false, error: String(error?.stack ?? error) })
  }
}
await shutdown()
