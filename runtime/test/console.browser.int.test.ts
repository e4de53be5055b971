/**
 * The console in a real headless browser (Debian's chromium driven by playwright-core) against
 * real runtimes with authentication on: an order's flow arriving live, a failed trade fixed from
 * the repair queue and its account's parked trades draining in order, a failed workflow restarted.
 * Screenshots of each page go to `.baton-screenshots/` (git-ignored).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import mqtt, { type MqttClient } from "mqtt"
import { chromium, type Browser, type Page } from "playwright-core"
import { Users } from "@baton/auth"
import type { Processor } from "@baton/core"
import { Effect } from "effect"
import type * as Runtime from "../src/Runtime.ts"
import { cards } from "./orders.ts"
import { startRuntime, type Harness } from "./support.ts"
import { waitFor } from "./trading.ts"

const executablePath = process.env.BATON_CHROMIUM ?? "/usr/bin/chromium"
const shots = join(import.meta.dirname, "..", "..", ".baton-screenshots")
const password = "correct horse"
const failingCard = "4000000000000119"

/** A users file with an operator and an observer (their HTTP tokens returned) and a client for MQTT. */
const usersFile = async (dir: string) => {
  const path = join(dir, "users.json")
  let file = await Users.addUser({ users: {}, tokens: {} }, "ops", password, ["operator"])
  file = await Users.addUser(file, "watcher", password, ["observer"])
  file = await Users.addUser(file, "app", password, ["client"])
  const ops = Users.addToken(file, "ops")
  const watcher = Users.addToken(ops.file, "watcher")
  Users.save(path, watcher.file)
  return { path, token: ops.token, observer: watcher.token }
}

const rig = (overrides: Parameters<typeof startRuntime>[0], options: Runtime.Options = {}) => {
  const ctx = {} as { h: Harness; client: MqttClient; token: string; observer: string; page: Page; base: string; dir: string }
  beforeAll(async () => {
    ctx.dir = mkdtempSync(join(tmpdir(), "baton-console-"))
    const users = await usersFile(ctx.dir)
    ctx.token = users.token
    ctx.observer = users.observer
    ctx.h = await startRuntime({ authFile: users.path, ...overrides }, options)
    ctx.client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: `app-${randomUUID().slice(0, 8)}`, username: "app", password })
    ctx.base = `http://127.0.0.1:${ctx.h.runtime.httpPort}`
    ctx.page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    ctx.page.on("pageerror", (error) => pageErrors.push(error.message))
    // The token is entered once; later visits take it from localStorage.
    await ctx.page.goto(`${ctx.base}/`)
    await ctx.page.waitForSelector("main[data-page=flows]")
    await ctx.page.fill("#token", ctx.token)
    await ctx.page.click("#token-form button")
    await ctx.page.waitForSelector("#flow-search")
  })
  afterAll(async () => {
    await ctx.page?.close()
    await ctx.client?.endAsync()
    await ctx.h?.stop()
    rmSync(ctx.dir, { recursive: true, force: true })
  })
  return ctx
}

let browser: Browser
const pageErrors: Array<string> = []

beforeAll(async () => {
  if (!existsSync(executablePath)) throw new Error(`no browser at ${executablePath}: apt-get install -y chromium (or set BATON_CHROMIUM)`)
  mkdirSync(shots, { recursive: true })
  browser = await chromium.launch({
    executablePath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
  })
})
afterAll(async () => {
  await browser?.close()
  expect(pageErrors, "no script error on any page").toEqual([])
})

/** Fails on an order-created whose customer id starts with `bad-` (a processing failure); records the others. */
const loyalty: Processor = {
  name: "loyalty",
  consumes: ["order-created"],
  handle: (event) =>
    Effect.suspend(() => {
      const data = event.data as { customerId: string }
      if (data.customerId.startsWith("bad-")) return Effect.die(new Error(`no loyalty account for ${data.customerId}`))
      return Effect.succeed([{ type: "loyalty-recorded", data: { customerId: data.customerId } }])
    })
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true })

describe("console, broker topology: flows and the repair queue", () => {
  const ctx = rig({ apps: ["order-entry", "trading"], maxAttempts: 1 }, { processors: () => [loyalty] })

  it("shows an order's events arriving live and its causation graph complete", async () => {
    const { page } = ctx
    const id = randomUUID()
    // The flow's page is open before the order is placed: what it shows arrives live.
    await page.goto(`${ctx.base}/console/#/flows/${id}`)
    await page.waitForSelector("#flow-summary[data-events='0']")
    await page.waitForSelector("#live.on")
    await ctx.client.publishAsync(
      "initiate/place-order",
      JSON.stringify({ id, type: "place-order", data: { customerId: "c-console", email: "c@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 9 }], payment: { card: cards.approved } } }),
      { qos: 1 }
    )
    await page.waitForSelector("#flow-tree [data-event-type=order-shipped]", { timeout: 15_000 })
    await page.waitForSelector("#flow-summary[data-pending='0']")
    // Events came over the stream, not only by polling.
    expect(await page.locator("#arrived li").count()).toBeGreaterThanOrEqual(5)
    // The graph: order-created under the initiating event, order-shipped under order-fulfilled.
    await expect(page.locator(`#flow-tree li[data-event-id='${id}'] > ul > li[data-event-type=order-created]`).count()).resolves.toBe(1)
    await expect(page.locator("#flow-tree li[data-event-type=order-fulfilled] > ul > li[data-event-type=order-shipped]").count()).resolves.toBe(1)
    await expect(page.locator("#flow-tree li[data-event-type=order-created] [data-processor][data-status=done]").count()).resolves.toBeGreaterThan(0)
    expect(await page.content()).not.toContain(cards.approved)
    await shot(page, "flow")

    // A declined order never ships: the stuck query finds it, not the shipped one.
    const declined = randomUUID()
    await ctx.client.publishAsync(
      "initiate/place-order",
      JSON.stringify({ id: declined, type: "place-order", data: { customerId: "c-declined", email: "d@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 9 }], payment: { card: cards.declined } } }),
      { qos: 1 }
    )
    await page.goto(`${ctx.base}/console/#/flows?minutes=10`)
    await page.waitForSelector(`tr[data-flow='${id}']`)
    await page.waitForSelector(`tr[data-flow='${declined}']`)
    await shot(page, "flows")
    await page.fill("#flow-stuck input[name=type]", "place-order")
    await page.fill("#flow-stuck input[name=notReached]", "order-shipped")
    await page.click("#flow-stuck button")
    await page.waitForSelector("text=Initiated by place-order, not reached order-shipped")
    await page.waitForSelector(`tr[data-flow='${declined}']`)
    expect(await page.locator(`tr[data-flow='${id}']`).count()).toBe(0)
    await shot(page, "flows-stuck")
  })

  it("fixes a failed trade from the repair queue with an edited payload; the account's parked trades drain in order", async () => {
    const { page } = ctx
    // One of the trading app's known accounts; this runtime trades on it in this test only.
    const account = "ACC-2"
    const trades = [
      { id: randomUUID(), data: { account, symbol: "MSFT", side: "buy", quantity: -5 } },
      { id: randomUUID(), data: { account, symbol: "MSFT", side: "sell", quantity: 2 } },
      { id: randomUUID(), data: { account, symbol: "MSFT", side: "buy", quantity: 3 } }
    ]
    for (const t of trades) await ctx.client.publishAsync("initiate/place-trade", JSON.stringify({ id: t.id, type: "place-trade", data: t.data }), { qos: 1 })
    const store = ctx.h.runtime.store
    const executed = async () => (await store.run(store.query("SELECT trade_id FROM trades WHERE account = ? ORDER BY seq").all(account))).map((r) => String(r.trade_id))

    await page.goto(`${ctx.base}/console/#/repair`)
    const entry = page.locator(`[data-entry][data-key='${account}']`)
    await entry.waitFor({ timeout: 15_000 })
    await page.waitForSelector(`tr[data-held='${account}'] td[data-parked='2']`, { timeout: 15_000 })
    expect(await executed()).toEqual([])
    await shot(page, "repair-queue")

    const editor = entry.locator("textarea")
    const shown = JSON.parse(await editor.inputValue()) as Record<string, unknown>
    expect(shown).toMatchObject({ account, quantity: -5 })
    await editor.fill(JSON.stringify({ ...shown, quantity: 5 }, null, 2))
    await entry.locator("button", { hasText: "Resubmit edited" }).click()
    await page.waitForSelector(".notice.ok >> text=resubmit: done")
    await waitFor(async () => (await executed()).length === 3, "the account's trades to drain")
    expect(await executed()).toEqual(trades.map((t) => t.id))
    await page.waitForSelector(`tr[data-held='${account}']`, { state: "detached" })
    await shot(page, "repair-queue-drained")

    // The trade's flow shows the fix: the failed delivery, the resubmission done.
    await page.goto(`${ctx.base}/console/#/flows/${trades[0]!.id}`)
    await page.waitForSelector("#flow-tree [data-status=failed]")
    await page.waitForSelector("#flow-tree [data-event-type=trade-executed]")
  })

  it("resubmits a processing failure from the repair queue with corrected data, to its processor only", async () => {
    const { page } = ctx
    const id = randomUUID()
    await ctx.client.publishAsync(
      "initiate/place-order",
      JSON.stringify({ id, type: "place-order", data: { customerId: "bad-customer", email: "r@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 9 }], payment: { card: cards.approved } } }),
      { qos: 1 }
    )
    const auth = { headers: { authorization: `Bearer ${ctx.token}` } }
    const flow = async () => (await (await fetch(`${ctx.base}/flows/${id}`, auth)).json()) as { rejections: Array<{ id: string; processor: string }>; events: Array<{ type: string; data: Record<string, unknown> }> }
    await waitFor(async () => (await flow()).rejections.some((r) => r.processor === "loyalty"), "the loyalty processor's rejection")
    const { rejections, events } = await flow()
    const rejection = rejections.find((r) => r.processor === "loyalty")!
    const created = events.find((e) => e.type === "order-created")!

    await page.goto(`${ctx.base}/console/#/repair`)
    const row = page.locator(`tr[data-rejection='${rejection.id}']`)
    await row.waitFor()
    await shot(page, "repair-processing-failure")
    await row.locator("textarea").fill(JSON.stringify({ ...created.data, customerId: "good-customer" }))
    await row.locator("button", { hasText: "Resubmit" }).click()
    await page.waitForSelector(".notice.ok >> text=done")
    await page.goto(`${ctx.base}/console/#/flows/${id}`)
    await page.waitForSelector("#flow-tree [data-event-type=loyalty-recorded]", { timeout: 15_000 })
    await page.waitForSelector("#flow-tree [data-processor=loyalty][data-status=failed]")
    await page.waitForSelector("#flow-tree [data-processor=loyalty][data-status=done]")
    await page.waitForSelector(`tr[data-rejection='${rejection.id}'] [data-resubmitted]`)
    await shot(page, "flow-resubmitted")
  })

  it("asks the console's endpoints for a token and a role, like the others", async () => {
    const call = (path: string, token?: string, method = "GET") =>
      fetch(`${ctx.base}${path}`, { method, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } }).then(async (r) => {
        const status = r.status
        await r.body?.cancel()
        return status
      })
    expect(await call("/flows")).toBe(401)
    expect(await call("/events/stream")).toBe(401)
    expect(await call("/flows", ctx.observer)).toBe(200)
    expect(await call("/flows/stuck?type=place-order&notReached=order-shipped", ctx.observer)).toBe(200)
    expect(await call("/events/stream", ctx.observer)).toBe(200)
    expect(await call("/errors/any/resubmit", ctx.observer, "POST")).toBe(403)
    expect(await call("/errors/any/resubmit", ctx.token, "POST")).toBe(404)
    // The page itself needs no token: it holds no data.
    expect(await call("/console/")).toBe(200)
  })

  it("shows the errors and cluster pages", async () => {
    const { page } = ctx
    await ctx.client.publishAsync("initiate/place-order", "{broken", { qos: 1 })
    await page.goto(`${ctx.base}/console/#/errors`)
    await page.waitForSelector("text=malformed-json", { timeout: 10_000 })
    await shot(page, "errors")
    await page.goto(`${ctx.base}/console/#/cluster`)
    await page.waitForSelector("#cluster-note")
    await shot(page, "cluster")
  })
})

describe("console, mediator topology: workflows", () => {
  const ctx = rig({ topology: "mediator", apps: ["order-entry"] })

  it("restarts a failed workflow from the workflows page with an edited JSON patch", async () => {
    const { page } = ctx
    const id = randomUUID()
    await ctx.client.publishAsync(
      "initiate/place-order",
      JSON.stringify({ id, type: "place-order", data: { customerId: "c-wf", email: "w@example.com", items: [{ sku: "BOOK-1", qty: 2, price: 4.5 }], payment: { card: failingCard } } }),
      { qos: 1 }
    )
    await page.goto(`${ctx.base}/console/#/workflows?status=failed`)
    await page.waitForSelector(`tr[data-workflow='${id}']`, { timeout: 15_000 })
    await shot(page, "workflows")
    await page.click(`tr[data-workflow='${id}'] a`)
    await page.waitForSelector("#workflow-failure")
    await page.waitForSelector("#timeline [data-status=failed]")
    await shot(page, "workflow-failed")
    await page.fill("#restart-patch", JSON.stringify({ payment: { card: cards.approved } }))
    await page.click("#restart")
    // A completed workflow is deleted once announced: the page says it is gone; its flow has the outcome.
    await page.waitForSelector("#workflow-gone", { timeout: 15_000 })
    await page.goto(`${ctx.base}/console/#/flows/${id}`)
    await page.waitForSelector("#flow-tree [data-event-type=workflow-completed]", { timeout: 15_000 })
    await page.waitForSelector("#flow-tree [data-event-type=workflow-restarted]")
    await shot(page, "workflow-flow")
    const ops = (await (await fetch(`${ctx.base}/operations?target=${id}`, { headers: { authorization: `Bearer ${ctx.token}` } })).json()) as { operations: Array<{ action: string; user: string }> }
    expect(ops.operations.map((o: { action: string; user: string }) => [o.action, o.user])).toEqual([["workflow-restart", "ops"]])
    expect(JSON.stringify(ops)).not.toContain(cards.approved)
  })
})
