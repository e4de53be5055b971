/**
 * `pnpm baton` against a real runtime (embedded broker, HTTP, users file, mediator topology with
 * the trading app), run as a child process like a person or a script would: each command in both
 * output modes, its refusals in one line, `tail` over MQTT with filters, and `user add`'s
 * password read from a pipe and, hidden, from a pseudo-terminal.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt, { type MqttClient } from "mqtt"
import { Users } from "@baton/auth"
import { Ports } from "@baton/testkit"
import { freshSchema } from "@baton/testkit/postgres"
import { collect, startRuntime, type Collector, type Harness } from "./support.ts"
import { cards } from "./orders.ts"
import { waitFor } from "./trading.ts"

const cli = resolve(import.meta.dirname, "../src/cli.ts")
const password = "correct horse"
const failingCard = "4000000000000119"

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** As the launcher behind `pnpm baton` does: modules compiled once for all the runs. */
const compileCache = { NODE_COMPILE_CACHE: join(tmpdir(), "baton-cli-test-compile-cache") }

/** At most this many CLI processes at a time: the machine has two cores. */
let running = 0
const queue: Array<() => void> = []

/** Runs `baton <args>` to its end; BATON_* variables from the test's environment are left out. */
const baton = async (args: ReadonlyArray<string>, env: Record<string, string> = {}, input?: string): Promise<Ran> => {
  if (running >= 3) await new Promise<void>((r) => queue.push(r))
  running += 1
  try {
    return await new Promise((done) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BATON_")))
      const child = execFile(process.execPath, [cli, ...args], { env: { ...clean, ...compileCache, ...env }, timeout: 60_000 }, (error, stdout, stderr) =>
        done({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr: error?.killed === true ? `killed after 60 s: ${stderr}` : stderr })
      )
      if (input !== undefined) child.stdin!.end(input)
      else child.stdin!.end()
    })
  } finally {
    running -= 1
    queue.shift()?.()
  }
}

const { freePort } = Ports

const lines = (text: string) => text.trimEnd().split("\n")
/** The table row whose first column is `first`, split on runs of two or more spaces. */
const row = (table: string, first: string) => lines(table).find((l) => l.startsWith(`${first} `))?.split(/ {2,}/)

const placeOrder = async (client: MqttClient, card: string, customerId = `c-${randomUUID().slice(0, 8)}`) => {
  const id = randomUUID()
  const data = { customerId, email: "h@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card } }
  await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data }), { qos: 1 })
  return { id, customerId }
}

// Each command is a Node process (about a second of CPU): on a loaded machine a test of several takes a while.
describe("pnpm baton against a running runtime", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-cli-"))
  const authFile = join(dir, "users.json")
  let h: Harness
  let client: MqttClient
  let events: Collector
  const tokens: Record<string, string> = {}
  let env: Record<string, string>
  let as: (role: string) => Record<string, string>

  beforeAll(async () => {
    let file: Users.File = { users: {}, tokens: {} }
    for (const role of ["client", "observer", "operator"] as const) {
      file = await Users.addUser(file, role, password, [role])
      const added = Users.addToken(file, role)
      file = added.file
      tokens[role] = added.token
    }
    Users.save(authFile, file)
    h = await startRuntime({ authFile, topology: "mediator", apps: ["order-entry", "customer", "trading"] })
    env = { BATON_HTTP: `http://127.0.0.1:${h.runtime.httpPort}` }
    as = (role) => ({ ...env, BATON_TOKEN: tokens[role]! })
    client = await mqtt.connectAsync(h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "client-cli", username: "client", password })
    events = await collect(client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await client?.endAsync()
    await h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const failedWorkflows = async () => {
    const ids = [(await placeOrder(client, failingCard)).id, (await placeOrder(client, failingCard)).id]
    await events.until((all) => ids.every((id) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-failed")), 20_000, "both workflows to fail")
    await h.runtime.idle()
    return ids as [string, string]
  }

  it("lists, shows, restarts and discards workflows, as tables and as JSON", async () => {
    const [restartable, discardable] = await failedWorkflows()
    // Commands that only read run side by side.
    const [list, json, show, showJson] = await Promise.all([
      baton(["workflows", "list", "--status", "failed"], as("observer")),
      baton(["workflows", "list", "--json", "--limit", "1", "--order", "desc"], as("observer")),
      baton(["workflows", "show", restartable], as("observer")),
      baton(["workflows", "show", restartable, "--json"], as("observer"))
    ])
    expect(list.code, list.stderr).toBe(0)
    expect(lines(list.stdout)[0]).toMatch(/^ID +WORKFLOW +DOMAIN +STATUS +STEP +UPDATED +FAILURE$/)
    expect(row(list.stdout, restartable)?.slice(1, 4)).toEqual(["place-order", "order", "failed"])
    expect(row(list.stdout, discardable)).toBeDefined()
    const page = JSON.parse(json.stdout)
    expect(page.workflows).toHaveLength(1)
    expect(typeof page.next).toBe("string")
    // The cursor of that page leads to the next one: the other workflow.
    const second = JSON.parse((await baton(["workflows", "list", "--json", "--limit", "1", "--order", "desc", "--cursor", page.next], as("observer"))).stdout)
    expect([page.workflows[0].id, second.workflows[0].id].sort()).toEqual([restartable, discardable].sort())

    expect(show.stdout).toMatch(new RegExp(`^id +${restartable}$`, "m"))
    expect(show.stdout).toMatch(/^status +failed$/m)
    expect(show.stdout).toMatch(/^STEP +COMMAND +CHANNEL +STATUS +ATTEMPTS +SENT +ERROR$/m)
    expect(show.stdout).toContain("****0119") // the card is masked, as in every answer
    expect(show.stdout).not.toContain(failingCard)
    expect(JSON.parse(showJson.stdout)).toMatchObject({ id: restartable, status: "failed" })

    const [restarted, discarded] = await Promise.all([
      baton(["workflows", "restart", restartable, "--patch", JSON.stringify({ payment: { card: cards.approved } }), "--json"], as("operator")),
      baton(["workflows", "discard", discardable, "--reason", "customer gave up"], as("operator"))
    ])
    expect(restarted.code, restarted.stderr).toBe(0)
    expect(JSON.parse(restarted.stdout)).toMatchObject({ id: restartable, operation: expect.any(String) })
    expect(discarded.stdout).toMatch(new RegExp(`^workflow ${discardable} discarded \\(operation [0-9a-f-]+\\)\n$`))

    // Both actions are in the operations log, with the operator's name.
    const [ops, opsOut] = await Promise.all([baton(["operations"], as("observer")), baton(["operations", "--json", "--target", restartable], as("observer"))])
    expect(lines(ops.stdout)[0]).toMatch(/^AT +USER +ACTION +TARGET +STATUS +REASON$/)
    expect(ops.stdout).toMatch(new RegExp(`operator +workflow-discard +${discardable} +200 +customer gave up`))
    expect(ops.stdout).toMatch(new RegExp(`operator +workflow-restart +${restartable} +200`))
    const opsJson = JSON.parse(opsOut.stdout)
    expect(opsJson.operations.map((o: { action: string }) => o.action)).toEqual(["workflow-restart"])
  })

  it("lists the dashboard, resubmits a corrected payload and discards an entry", async () => {
    const trades = { "ACC-404": randomUUID(), "ACC-405": randomUUID() }
    for (const [account, id] of Object.entries(trades))
      await client.publishAsync("initiate/place-trade", JSON.stringify({ id, type: "place-trade", data: { account, symbol: "AAPL", side: "buy", quantity: 1 } }), { qos: 1 })
    // Waited for over HTTP (a CLI process per poll would be slow); the CLI then lists what is there.
    let entries: ReadonlyArray<{ id: string; trail: Array<string> }> = []
    const entryOf = (trade: string) => entries.find((e) => e.trail[0] === trade)?.id
    await waitFor(async () => {
      entries = (await (await fetch(`${env.BATON_HTTP}/dashboard?limit=1000`, { headers: { authorization: `Bearer ${tokens.observer}` } })).json() as { entries: typeof entries }).entries
      return Object.values(trades).every((t) => entryOf(t) !== undefined)
    }, "the dashboard entries")
    const [fix, drop] = [entryOf(trades["ACC-404"])!, entryOf(trades["ACC-405"])!]
    const list = await baton(["dashboard", "list"], as("observer"))
    expect(lines(list.stdout)[0]).toMatch(/^ID +PROCESSOR +KEY +TYPE +STATUS +CREATED +ERROR$/)
    expect(row(list.stdout, fix)?.slice(2, 5)).toEqual(["ACC-404", "place-trade", "open"])
    expect(row(list.stdout, drop)?.[2]).toBe("ACC-405")
    expect(list.stdout).toMatch(/^held keys$/m)
    expect(list.stdout).toMatch(/^PROCESSOR +KEY +PARKED +SINCE +FAILED$/m)

    const [resubmitted, discarded] = await Promise.all([
      baton(["dashboard", "resubmit", fix, "--payload", JSON.stringify({ account: "ACC-4", symbol: "AAPL", side: "buy", quantity: 1 }), "--json"], as("operator")),
      baton(["dashboard", "discard", drop, "--reason", "no such account"], as("operator"))
    ])
    expect(resubmitted.code, resubmitted.stderr).toBe(0)
    expect(JSON.parse(resubmitted.stdout)).toMatchObject({ id: fix, status: "resubmitted", resubmittedPayload: { account: "ACC-4" } })
    expect(discarded.stdout).toMatch(new RegExp(`^entry ${drop} discarded: discarded \\(operation [0-9a-f-]+\\)\n$`))
    const all = await baton(["dashboard", "list", "--status", "all"], as("observer"))
    expect(row(all.stdout, fix)?.[4]).toBe("resubmitted")
    expect(row(all.stdout, drop)?.[4]).toBe("discarded")
  })

  it("shows one order's flow as a causation tree, and as JSON", async () => {
    const order = await placeOrder(client, cards.approved)
    await events.until((all) => all.some((r) => r.envelope.correlationId === order.id && r.envelope.type === "workflow-completed"), 20_000, "the order's workflow")
    const [text, jsonOut] = await Promise.all([baton(["flow", order.id], as("observer")), baton(["flow", order.id, "--json"], as("observer"))])
    expect(text.code, text.stderr).toBe(0)
    const tree = lines(text.stdout)
    // The initiating event is the root, and what it caused is indented under it, with the processor that received it.
    expect(tree[0]).toMatch(new RegExp(`^place-order ${order.id} \\(.*done`))
    expect(tree.slice(1).every((l) => l.startsWith("  ")), text.stdout).toBe(true)
    const json = JSON.parse(jsonOut.stdout) as { correlationId: string; events: Array<{ id: string; type: string; causationId: string }> }
    expect(json.correlationId).toBe(order.id)
    const ids = new Set(json.events.map((e) => e.id))
    for (const e of json.events) if (e.id !== order.id) expect(ids.has(e.causationId), `${e.type} caused by an event of the flow`).toBe(true)
    // Every event the JSON lists is a line of the tree.
    for (const e of json.events) expect(text.stdout).toContain(`${e.type} ${e.id}`)
    expect(json.events.length).toBeGreaterThan(1)
  })

  it("lists rejections with their counts", async () => {
    await client.publishAsync("initiate/place-order", "{not json", { qos: 1 })
    await events.until((all) => all.some((r) => r.topic === "errors/initiate/place-order" && (r.envelope.data as { kind?: string }).kind === "malformed-json"), 10_000, "the rejection")
    const [text, jsonOut] = await Promise.all([baton(["errors"], as("observer")), baton(["errors", "--json", "--limit", "1"], as("observer"))])
    expect(text.stdout).toMatch(/^counts: .*malformed-json=1/)
    expect(text.stdout).toMatch(/^AT +KIND +TOPIC +PROCESSOR +REASON$/m)
    expect(text.stdout).toMatch(/ malformed-json +initiate\/place-order +- +/)
    const json = JSON.parse(jsonOut.stdout)
    expect(json.counts["malformed-json"]).toBe(1)
    expect(json.recent).toHaveLength(1)
  })

  it("says in one line what went wrong: no token, a missing role, an unknown id, no runtime, bad input", async () => {
    const closed = await freePort()
    const [noToken, wrongRole, observerActs, unknown, alone, down, badPatch, badFlag] = await Promise.all([
      baton(["errors"], env),
      baton(["workflows", "list", "--token", tokens.client!], env),
      baton(["workflows", "discard", "x", "--reason", "r"], as("observer")),
      baton(["workflows", "show", "nope"], as("observer")),
      baton(["cluster"], as("observer")),
      baton(["errors", "--url", `http://127.0.0.1:${closed}`], as("observer")),
      baton(["workflows", "restart", "x", "--patch", "[1]"], as("operator")),
      baton(["workflows", "list", "--limit", "many"], as("observer"))
    ])
    expect(noToken).toMatchObject({ code: 1, stdout: "" })
    expect(noToken.stderr).toMatch(/^baton: 401 unauthorized: this endpoint needs an Authorization: Bearer <token> header .*; pass --token or set BATON_TOKEN\n$/)
    expect(wrongRole.stderr).toBe("baton: 403 forbidden: user 'client' (roles client) may not read workflows: that needs the observer or operator or service role\n")
    expect(observerActs.stderr).toMatch(/that needs the operator role\n$/)
    expect(unknown).toMatchObject({ code: 1, stdout: "" })
    expect(unknown.stderr).toMatch(/^baton: 404 not found: no workflow nope /)
    expect(alone.stderr).toMatch(/^baton: 404 not found: this instance runs alone/)
    expect(down.stderr).toBe(`baton: the runtime is not reachable at http://127.0.0.1:${closed} (ECONNREFUSED): is it running? set --url or BATON_HTTP\n`)
    expect(badPatch).toMatchObject({ code: 2, stderr: "baton: --patch must be a JSON object\n" })
    expect(badFlag.code).not.toBe(0)
    expect(badFlag.stderr).toContain('Invalid value for flag --limit: "many"')
  })

  it("tails an order's events with a filter and leaves the others out", async () => {
    const mine = randomUUID()
    const tails: Array<{ child: ChildProcess; out: string; err: string; code: number | undefined }> = []
    const tail = (args: ReadonlyArray<string>) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BATON_")))
      const child = spawn(process.execPath, [cli, "tail", "--mqtt", h.url, "--user", "observer", ...args], { env: { ...clean, BATON_PASSWORD: password } })
      const t = { child, out: "", err: "", code: undefined as number | undefined }
      child.stdout.on("data", (d) => (t.out += String(d)))
      child.stderr.on("data", (d) => (t.err += String(d)))
      child.once("exit", (code) => (t.code = code ?? -1))
      tails.push(t)
      return t
    }
    try {
      // By correlation id, as JSON lines: the order's workflow start and end, not the other order's.
      const byCorrelation = tail(["--json", "--correlation", mine, "--type", "workflow-started", "--type", "workflow-completed", "--count", "2"])
      // By key (a trade's account), as a table line: only that account's trade.
      const byKey = tail(["events/#", "--key", "ACC-7", "--type", "trade-executed", "--count", "1"])
      await waitFor(() => tails.every((t) => t.err.startsWith("tailing ")), "the tails to subscribe")
      const other = await placeOrder(client, cards.approved)
      const otherTrade = randomUUID()
      await client.publishAsync("initiate/place-trade", JSON.stringify({ id: otherTrade, type: "place-trade", data: { account: "ACC-8", symbol: "AAPL", side: "buy", quantity: 1 } }), { qos: 1 })
      await events.until((all) => all.some((r) => r.envelope.correlationId === other.id && r.envelope.type === "workflow-completed"), 15_000, "the other order")
      await events.until((all) => all.some((r) => r.envelope.correlationId === otherTrade && r.envelope.type === "trade-executed"), 15_000, "the other trade")
      const data = { customerId: "c-mine", email: "h@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card: cards.approved } }
      await client.publishAsync("initiate/place-order", JSON.stringify({ id: mine, type: "place-order", data }), { qos: 1 })
      const trade = randomUUID()
      await client.publishAsync("initiate/place-trade", JSON.stringify({ id: trade, type: "place-trade", data: { account: "ACC-7", symbol: "AAPL", side: "buy", quantity: 1 } }), { qos: 1 })
      await waitFor(() => tails.every((t) => t.code !== undefined), "the tails to stop at their --count", 20_000)
      expect(tails.map((t) => t.code)).toEqual([0, 0])
      const seen = lines(byCorrelation.out).map((l) => JSON.parse(l) as { topic: string; type: string; correlationId: string })
      expect(seen.map((e) => [e.topic, e.type, e.correlationId])).toEqual([
        ["events/workflow-started", "workflow-started", mine],
        ["events/workflow-completed", "workflow-completed", mine]
      ])
      expect(lines(byKey.out)).toEqual([expect.stringMatching(new RegExp(`^\\S+  events/trade-executed  trade-executed  key=ACC-7  correlation=${trade}  id=\\S+$`))])
    } finally {
      for (const t of tails) t.child.kill()
    }
  })

  it("refuses a tail with a wrong password or a filter outside the user's grants", async () => {
    const [wrong, outside, badFilter] = await Promise.all([
      baton(["tail", "--mqtt", h.url, "--user", "observer"], { BATON_PASSWORD: "wrong password" }),
      baton(["tail", "--mqtt", h.url, "--user", "observer", "accepted/#"], { BATON_PASSWORD: password }),
      baton(["tail", "events/#/x"], {})
    ])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^baton: cannot connect to mqtt:\/\/127\.0\.0\.1:\d+: .*Not authorized.* \(set --user and BATON_PASSWORD\)\n$/)
    expect(outside.stderr).toMatch(/^baton: the broker refused the subscription to accepted\/#: /)
    expect(badFilter.stderr).toBe("baton: not an MQTT topic filter: events/#/x\n")
  })
})

describe("pnpm baton cluster", () => {
  let h: Harness
  let schema: { readonly url: string; readonly drop: () => Promise<void> }
  beforeAll(async () => {
    schema = await freshSchema()
    h = await startRuntime({ databaseUrl: schema.url, apps: ["order-entry"] })
  })
  afterAll(async () => {
    await h?.stop()
    await schema?.drop()
  })

  it("shows the instances and their partitions", async () => {
    const env = { BATON_HTTP: `http://127.0.0.1:${h.runtime.httpPort}` }
    const text = await baton(["cluster"], env)
    expect(text.code, text.stderr).toBe(0)
    expect(lines(text.stdout)[0]).toMatch(new RegExp(`^instance ${h.config.instance}, \\d+ partitions$`))
    expect(text.stdout).toMatch(/^INSTANCE +LIVE +HEARTBEAT MS +PARTITIONS +WORKFLOWS +HTTP +MQTT$/m)
    expect(row(text.stdout, h.config.instance)?.[1]).toBe("true")
    const json = JSON.parse((await baton(["cluster", "--json"], env)).stdout)
    expect(json.members.map((m: { instance: string }) => m.instance)).toEqual([h.config.instance])
  })
})

describe("pnpm baton user add", () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-cli-users-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("reads the password from a pipe", async () => {
    const file = join(dir, "piped.json")
    const [added, short] = await Promise.all([
      baton(["user", "add", "ann", "--role", "observer", "--role", "operator", "--file", file], {}, "piped secret 1\n"),
      baton(["user", "add", "bob", "--file", join(dir, "other.json")], {}, "short\n")
    ])
    expect(added).toEqual({ code: 0, stdout: `user ann saved in ${file} with roles observer,operator\n`, stderr: "" })
    expect(await Users.authenticate(Users.load(file), "ann", "piped secret 1")).toEqual(["observer", "operator"])
    expect(short).toMatchObject({ code: 2, stderr: "baton: the password must hold at least 8 characters\n" })
    expect((await baton(["user", "list", "--file", file])).stdout).toBe("ann observer,operator\n")
  })

  it("reads the password at a terminal without echoing it", async () => {
    const file = join(dir, "tty.json")
    const secret = "tty-secret-4711"
    // util-linux `script` gives the CLI a pseudo-terminal; everything the terminal shows comes back on its stdout.
    const child = spawn("script", ["-qfec", `${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} user add tess --role observer --file ${JSON.stringify(file)}`, "/dev/null"], {
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BATON_")))
    })
    let screen = ""
    child.stdout.on("data", (d) => (screen += String(d)))
    const exit = new Promise<number>((r) => child.once("exit", (code) => r(code ?? -1)))
    await waitFor(() => screen.includes("password: "), "the prompt", 15_000)
    // Typed with a mistake corrected by Backspace, then Enter.
    child.stdin.write(`${secret}x\u007f\r`)
    expect(await exit).toBe(0)
    expect(screen).toContain("user tess saved in")
    expect(screen).not.toContain(secret)
    expect(screen).not.toContain("tty-secret")
    expect(await Users.authenticate(Users.load(file), "tess", secret)).toEqual(["observer"])
  })
})
