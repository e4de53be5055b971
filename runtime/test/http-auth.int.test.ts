/**
 * HTTP authorisation through the real runtime: roles per endpoint, operator actions logged and
 * recorded with their user, discarding a failed workflow, the resubmit answer, the users file
 * reloaded while running, and paging past the first 100 entries of every list.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt, { type MqttClient } from "mqtt"
import { Users } from "@baton/auth"
import { collect, startRuntime, type Collector, type Harness } from "./support.ts"
import { cards } from "./orders.ts"
import { waitFor } from "./trading.ts"

const failingCard = "4000000000000119"
const password = "correct horse"

type Role = "client" | "observer" | "operator" | "service"

/** A users file with one user per role (named after it) and a token each. */
const usersFile = async (path: string) => {
  let file: Users.File = { users: {}, tokens: {} }
  const tokens = {} as Record<Role, string>
  for (const role of ["client", "observer", "operator", "service"] as const) {
    file = await Users.addUser(file, role, password, [role])
    const added = Users.addToken(file, role)
    file = added.file
    tokens[role] = added.token
  }
  Users.save(path, file)
  return { file, tokens }
}

const call = async (port: number, path: string, token: string | undefined, method = "GET", body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })
  return { status: res.status, body: (await res.json()) as Record<string, any> }
}

const placeOrder = async (client: MqttClient, card: string) => {
  const id = randomUUID()
  const data = { customerId: `c-${id.slice(0, 8)}`, email: "h@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card } }
  await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data }), { qos: 1 })
  return id
}

const failedWorkflow = async (client: MqttClient, events: Collector) => {
  const id = await placeOrder(client, failingCard)
  await events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-failed"), 15_000, `workflow ${id} to fail`)
  return id
}

describe("HTTP authorisation", () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-httpauth-"))
  const authFile = join(dir, "users.json")
  let h: Harness
  let client: MqttClient
  let events: Collector
  let tokens: Record<Role, string>
  let port: number

  beforeAll(async () => {
    tokens = (await usersFile(authFile)).tokens
    h = await startRuntime({ authFile, authReloadMs: 100, topology: "mediator", apps: ["order-entry", "customer", "trading"] })
    port = h.runtime.httpPort
    client = await mqtt.connectAsync(h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "client-1", username: "client", password })
    events = await collect(client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await client?.endAsync()
    await h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it("lets each role do what its grants say, and tells a refused user which role it needs", async () => {
    const reads = ["/errors", "/workflows", "/workflows/nope", "/dashboard", "/cluster", "/operations"]
    const actions: ReadonlyArray<readonly [string, unknown]> = [
      ["/workflows/nope/restart", undefined],
      ["/workflows/nope/discard", { reason: "r" }],
      ["/dashboard/nope/resubmit", undefined],
      ["/dashboard/nope/discard", { reason: "r" }]
    ]
    // What each endpoint answers when allowed: a read of something that does not exist is a 404.
    const readStatus: Record<string, number> = { "/workflows/nope": 404, "/cluster": 404 }
    for (const role of ["client", "observer", "operator", "service"] as const) {
      for (const path of reads) {
        const answer = await call(port, path, tokens[role])
        const mayRead = role !== "client"
        expect(answer.status, `${role} GET ${path}`).toBe(mayRead ? (readStatus[path] ?? 200) : 403)
        if (!mayRead) expect(answer.body.reason, `${role} GET ${path}`).toMatch(/^user 'client' \(roles client\) may not .*: that needs the observer or operator or service role/)
      }
      for (const [path, body] of actions) {
        const answer = await call(port, path, tokens[role], "POST", body)
        expect(answer.status, `${role} POST ${path}`).toBe(role === "operator" ? 404 : 403)
        if (role !== "operator") expect(answer.body).toEqual({ error: "forbidden", reason: expect.stringContaining("that needs the operator role") })
      }
    }
    // Refusals are logged once each; what was refused never reached the operations log.
    expect(h.logger.lines.filter((l) => l.includes("http refused") && l.includes("user=client")).length).toBe(reads.length + actions.length)
    const log = await call(port, "/operations?limit=1000", tokens.observer)
    expect(log.body.operations.filter((o: { user: string }) => o.user !== "operator")).toEqual([])
    // An unknown or missing token is a 401, whatever the path.
    expect((await call(port, "/workflows/nope/restart", "0.nope", "POST")).status).toBe(401)
    expect((await call(port, "/dashboard", undefined)).status).toBe(401)
  })

  it("refuses a client's restart of a failed workflow; an operator's restart is logged in one line and recorded with the user", async () => {
    const id = await failedWorkflow(client, events)
    await h.runtime.idle()
    const refused = await call(port, `/workflows/${id}/restart`, tokens.client, "POST", { payment: { card: cards.approved } })
    expect(refused.status).toBe(403)
    expect((await call(port, `/workflows/${id}`, tokens.observer)).body.status).toBe("failed")

    const restarted = await call(port, `/workflows/${id}/restart`, tokens.operator, "POST", { payment: { card: cards.approved } })
    expect(restarted.status).toBe(200)
    await events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-completed"), 15_000, "the restarted workflow to complete")
    const lines = h.logger.lines.filter((l) => l.includes("operator action") && l.includes(`target=${id}`))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/user=operator .*action=workflow-restart .*status=200/)
    const recorded = (await call(port, `/operations?target=${id}`, tokens.observer)).body.operations
    expect(recorded).toEqual([
      expect.objectContaining({ id: restarted.body.operation, user: "operator", action: "workflow-restart", target: id, status: 200, detail: { patched: ["payment"], patch: { payment: { card: "****4242" } } } })
    ])
    expect(JSON.stringify(recorded)).not.toContain(cards.approved)
  })

  it("discards a failed workflow with a reason: kept as discarded, announced, recorded, and never restarted", async () => {
    const id = await failedWorkflow(client, events)
    await h.runtime.idle()
    expect((await call(port, `/workflows/${id}/discard`, tokens.operator, "POST", {})).status).toBe(400)
    const discarded = await call(port, `/workflows/${id}/discard`, tokens.operator, "POST", { reason: "customer gave up" })
    expect(discarded.status).toBe(200)
    expect(discarded.body).toMatchObject({ id, status: "discarded", discarded: { by: "operator", reason: "customer gave up" }, failure: { command: "apply-payment" } })
    await events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-discarded"), 5000, "workflow-discarded")
    expect(events.received.find((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-discarded")?.envelope.data).toMatchObject({ workflowId: id, reason: "customer gave up", by: "operator" })

    const again = await call(port, `/workflows/${id}/restart`, tokens.operator, "POST", { payment: { card: cards.approved } })
    expect(again).toMatchObject({ status: 409, body: { reason: expect.stringContaining("is discarded; only a failed workflow can be restarted") } })
    expect((await call(port, `/workflows/${id}/discard`, tokens.operator, "POST", { reason: "twice" })).status).toBe(409)
    expect((await call(port, `/workflows/${id}`, tokens.observer)).body.status).toBe("discarded")
    const listed = await call(port, "/workflows?status=discarded", tokens.observer)
    expect(listed.body.workflows.map((w: { id: string }) => w.id)).toContain(id)
    // Nothing moved it: no command was sent again, the workflow never completed.
    await h.runtime.idle()
    expect(events.received.some((r) => r.envelope.correlationId === id && ["workflow-restarted", "workflow-completed"].includes(r.envelope.type))).toBe(false)
    const recorded = (await call(port, `/operations?target=${id}&order=asc`, tokens.observer)).body.operations
    expect(recorded.map((o: { action: string; status: number; reason?: string }) => [o.action, o.status, o.reason])).toEqual([
      ["workflow-discard", 400, undefined],
      ["workflow-discard", 200, "customer gave up"],
      ["workflow-restart", 409, undefined],
      ["workflow-discard", 409, "twice"]
    ])
  })

  it("answers a resubmit with the corrected payload that was sent", async () => {
    const id = randomUUID()
    await client.publishAsync("initiate/place-trade", JSON.stringify({ id, type: "place-trade", data: { account: "ACC-404", symbol: "AAPL", side: "buy", quantity: 1 } }), { qos: 1 })
    let entry: { id: string } | undefined
    await waitFor(async () => (entry = (await call(port, "/dashboard?limit=1000", tokens.observer)).body.entries.find((e: { trail: Array<string> }) => e.trail[0] === id)) !== undefined, "the dashboard entry")
    const corrected = { account: "ACC-4", symbol: "AAPL", side: "buy", quantity: 1 }
    const mentions = () => h.logger.lines.filter((l) => l.includes(entry!.id)).length
    const before = mentions()
    const answer = await call(port, `/dashboard/${entry!.id}/resubmit`, tokens.operator, "POST", corrected)
    expect(answer.status).toBe(200)
    // One log line for the action, with its user.
    expect(mentions() - before).toBe(1)
    expect(h.logger.lines.filter((l) => l.includes(entry!.id)).at(-1)).toMatch(/operator action .*user=operator .*action=dashboard-resubmit/)
    expect(answer.body).toMatchObject({ status: "resubmitted", payload: { account: "ACC-404" }, resubmittedPayload: corrected })
    const listed = (await call(port, "/dashboard?status=resubmitted&limit=1000", tokens.observer)).body.entries.find((e: { id: string }) => e.id === entry!.id)
    expect(listed.resubmittedPayload).toEqual(corrected)
    expect((await call(port, `/operations?target=${entry!.id}`, tokens.observer)).body.operations).toEqual([
      expect.objectContaining({ user: "operator", action: "dashboard-resubmit", status: 200, detail: { corrected: true, payload: corrected } })
    ])
  })

  it("reloads the users file when it changes: a new token is accepted, a removed one refused, a broken file keeps the last good one", async () => {
    const current = Users.load(authFile)
    const added = Users.addToken(current, "observer")
    Users.save(authFile, added.file)
    await waitFor(async () => (await call(port, "/errors", added.token)).status === 200, "the new token to be accepted", 5000)
    Users.save(authFile, Users.removeToken(added.file, tokens.observer.split(".")[0]!))
    await waitFor(async () => (await call(port, "/errors", tokens.observer)).status === 401, "the removed token to be refused", 5000)
    expect((await call(port, "/errors", added.token)).status).toBe(200)
    writeFileSync(authFile, "{ not json")
    await waitFor(() => h.logger.lines.some((l) => l.includes("users file not reloaded")), "the broken file to be reported", 5000)
    expect((await call(port, "/errors", added.token)).status).toBe(200)
    Users.save(authFile, { ...added.file, tokens: { ...added.file.tokens } })
    await waitFor(async () => (await call(port, "/errors", tokens.observer)).status === 200, "the restored token", 5000)
  })

  it("keeps accepting a token hashed with scrypt by an older users file, and says how to replace it", async () => {
    const file = Users.load(authFile)
    const secret = "an-older-token-secret"
    Users.save(authFile, { ...file, tokens: { ...file.tokens, old1: { user: "observer", ...(await Users.hash(secret)) } } })
    await waitFor(async () => (await call(port, "/errors", `old1.${secret}`)).status === 200, "the scrypt token to be accepted", 5000)
    expect((await call(port, "/errors", "old1.wrong")).status).toBe(401)
    expect(h.logger.lines.some((l) => l.includes("HTTP tokens hashed with scrypt") && l.includes("tokens=old1") && l.includes("pnpm baton token remove"))).toBe(true)
  })
})

describe("paging past the first 100 entries, without a users file", () => {
  let h: Harness
  let client: MqttClient
  let events: Collector
  let port: number
  beforeAll(async () => {
    // A failing payment goes to the error path at its first attempt, without a back-off: a hundred of them fail quickly.
    h = await startRuntime({ topology: "mediator", apps: ["order-entry", "customer", "trading"], maxAttempts: 1 }, { policy: { maxAttempts: 1, maxDelayMs: 1, maxRestarts: 10_000 } })
    port = h.runtime.httpPort
    client = await mqtt.connectAsync(h.url, { protocolVersion: 4, reconnectPeriod: 0 })
    events = await collect(client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await client?.endAsync()
    await h?.stop()
  })

  /** Every item of a list, following `next` from the first page. */
  const walk = async (path: string, field: string): Promise<Array<Record<string, any>>> => {
    const all: Array<Record<string, any>> = []
    let cursor: string | undefined
    for (let pages = 0; pages < 100; pages++) {
      const page = await call(port, `${path}${path.includes("?") ? "&" : "?"}${cursor === undefined ? "" : `cursor=${cursor}`}`, undefined)
      expect(page.status, path).toBe(200)
      all.push(...page.body[field])
      if (page.body.next === undefined) return all
      cursor = page.body.next
    }
    throw new Error(`${path}: more than 100 pages`)
  }
  const unique = (xs: ReadonlyArray<string>) => expect(new Set(xs).size, "no entry on two pages").toBe(xs.length)

  it("pages the dashboard: past 100 open entries a new one is first newest-first, and last oldest-first", async () => {
    const trade = (account: string) => ({ id: randomUUID(), type: "place-trade", data: { account, symbol: "AAPL", side: "buy", quantity: 1 } })
    const entries = async () => (await walk("/dashboard?limit=37", "entries")).length
    for (let i = 0; i < 104; i++) await client.publishAsync("initiate/place-trade", JSON.stringify(trade(`ACC-${1000 + i}`)), { qos: 1 })
    await waitFor(async () => (await entries()) === 104, "104 dashboard entries", 30_000)
    const first = await call(port, "/dashboard", undefined)
    expect(first.body.entries).toHaveLength(100)
    expect(typeof first.body.next).toBe("string")
    const newest = trade("ACC-2000")
    await client.publishAsync("initiate/place-trade", JSON.stringify(newest), { qos: 1 })
    await waitFor(async () => (await entries()) === 105, "the 105th entry", 10_000)
    const top = await call(port, "/dashboard?order=desc&limit=1", undefined)
    expect(top.body.entries[0].trail[0]).toBe(newest.id)
    const all = await walk("/dashboard", "entries")
    unique(all.map((e) => e.id))
    expect(all).toHaveLength(105)
    expect(all.at(-1)!.trail[0]).toBe(newest.id)
    expect(all.map((e) => e.createdAt)).toEqual(all.map((e) => e.createdAt).sort())
    expect((await call(port, "/dashboard?cursor=bogus", undefined)).body).toMatchObject({ error: "bad request", reason: expect.stringContaining("not one this list gave out") })
    // Without a users file the local user may act, and is recorded as anonymous.
    const discarded = await call(port, `/dashboard/${all[0]!.id}/discard`, undefined, "POST", { reason: "test" })
    expect(discarded.status).toBe(200)
    expect((await call(port, `/operations?target=${all[0]!.id}`, undefined)).body.operations).toEqual([expect.objectContaining({ user: "anonymous", action: "dashboard-discard", reason: "test" })])
  })

  it("pages rejections: newest first by default, every one reachable oldest first", async () => {
    const before = (await walk("/errors?order=asc&limit=1000", "recent")).length
    for (let i = 0; i < 103; i++) await client.publishAsync("initiate/place-order", `{"bad json ${i}`, { qos: 1 })
    const marker = `{"the newest bad json ${randomUUID()}`
    await client.publishAsync("initiate/place-order", marker, { qos: 1 })
    await waitFor(async () => (await call(port, "/errors?limit=1", undefined)).body.recent[0]?.payload === marker, "the newest rejection first", 10_000)
    const all = await walk("/errors?order=asc&limit=30", "recent")
    unique(all.map((r) => r.id))
    expect(all).toHaveLength(before + 104)
    expect(all.at(-1)!.payload).toBe(marker)
    const newestFirst = await walk("/errors?limit=45", "recent")
    expect(newestFirst.map((r) => r.id)).toEqual(all.map((r) => r.id).reverse())
  })

  it("pages workflows: past 100 failed ones a new failure is first newest-first, and reachable oldest-first", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 101; i++) ids.push(await placeOrder(client, failingCard))
    await events.until((all) => ids.every((id) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-failed")), 60_000, "101 failed workflows")
    await h.runtime.idle()
    expect((await call(port, "/workflows?status=failed", undefined)).body.workflows).toHaveLength(100)
    const newest = await failedWorkflow(client, events)
    await h.runtime.idle()
    expect((await call(port, "/workflows?status=failed&order=desc&limit=1", undefined)).body.workflows[0].id).toBe(newest)
    const all = await walk("/workflows?status=failed&limit=40", "workflows")
    unique(all.map((w) => w.id))
    expect(all.map((w) => w.id).sort()).toEqual([...ids, newest].sort())
    expect(all.at(-1)!.id).toBe(newest)
  })
})
