/**
 * Data that must not leak: orders with random card numbers go through every error kind the runtime
 * has, in both topologies, and no card number may appear in anything the runtime publishes, logs,
 * e-mails or answers over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomUUID } from "node:crypto"
import fc from "fast-check"
import mqtt, { type MqttClient } from "mqtt"
import { Effect } from "effect"
import { Acl, Users } from "@baton/auth"
import type { Processor } from "@baton/core"
import { Payment } from "@baton/order-entry"
import type { Config } from "../src/Config.ts"
import { propertyRuns, sleep, startRuntime, type Harness } from "./support.ts"

const password = "masking secret"
const maxPayloadBytes = 4096
const { declinedCard, failingCard } = Payment

/** Every run of 12 or more digits (spaces and dashes between them allowed), UUIDs taken out first. */
const digitRuns = (s: string): ReadonlyArray<string> =>
  s.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, "<uuid>").match(/[0-9](?:[ -]?[0-9]){11,}/g) ?? []

/** Every value of a field named `card`, in a JSON text and in the JSON texts inside it (rejected payloads). */
const cardFields = (text: string): ReadonlyArray<unknown> => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return []
  }
  const found: Array<unknown> = []
  const walk = (v: unknown): void => {
    if (typeof v === "string" && /^[[{]/.test(v)) found.push(...cardFields(v))
    else if (typeof v === "object" && v !== null) for (const [k, x] of Object.entries(v)) k === "card" ? found.push(x) : walk(x)
  }
  walk(value)
  return found
}

/** A card number of 12 to 19 digits; about half of them pass the Luhn check (and are charged). */
const card = fc
  .tuple(fc.stringMatching(/^[1-9][0-9]{10,17}$/), fc.integer({ min: 0, max: 9 }), fc.boolean())
  .map(([body, d, valid]) => [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((x) => `${body}${(d + x) % 10}`).find((c) => Payment.luhn(c) === valid)!)
/** As a person might type it: in groups of four, with spaces or dashes. */
const typed = (c: string, sep: string) => (c.match(/.{1,4}/g) ?? []).join(sep)

/** One card per error kind, for each run. */
const batch = fc.record({
  malformed: card,
  notUtf8: card,
  asNumber: card,
  spaced: card,
  unknownTopic: card,
  oversized: card,
  unknownSku: card,
  echoed: card,
  random: card,
  short: card,
  restart: card,
  refused: card,
  url: card,
  trade: card,
  separator: fc.constantFrom(" ", "-")
})
type Batch = typeof batch extends fc.Arbitrary<infer B> ? B : never

/** A processor whose error message echoes the whole input, card included, for customers named `echo-...`. */
const echo: Processor = {
  name: "echo",
  consumes: ["place-order"],
  handle: (event) => {
    const data = event.data as { customerId: string }
    return data.customerId.startsWith("echo-") ? Effect.fail(new Error(`cannot take ${JSON.stringify(data)}`)) : Effect.succeed([])
  }
}

const topologies: ReadonlyArray<Config["topology"]> = ["broker", "mediator"]

describe.each(topologies)("no card number leaks (%s topology)", (topology) => {
  const dir = mkdtempSync(join(tmpdir(), "baton-mask-"))
  const clientId = "ann-masking"
  const ctx = {} as { h: Harness; ann: MqttClient; svc: MqttClient; token: string }
  /** Everything published (but what clients sent on `initiate/`), and every HTTP answer. */
  const published: Array<{ topic: string; text: string }> = []
  const answers: Array<string> = []
  /** Rejected payloads that are not UTF-8 travel as base64: their bytes, to look inside. */
  const decoded: Array<{ topic: string; text: string }> = []
  const cards: Array<string> = [declinedCard, failingCard]
  let serial = 0

  beforeAll(async () => {
    let file = await Users.addUser({ users: {}, tokens: {} }, "ann", password, ["client"])
    file = await Users.addUser(file, "svc", password, ["service"])
    // Reads need an observer; the workflow restart needs the operator role where it exists.
    file = await Users.addUser(file, "ops", password, ["operator", "observer"].filter(Acl.isRole))
    const added = await Users.addToken(file, "ops")
    ctx.token = added.token
    Users.save(join(dir, "users.json"), added.file)
    ctx.h = await startRuntime(
      { authFile: join(dir, "users.json"), topology, maxPayloadBytes, apps: ["order-entry", "customer", "trading"] },
      { processors: () => [echo] }
    )
    ctx.svc = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "svc-masking", username: "svc", password })
    ctx.svc.on("message", (topic, payload) => {
      const text = payload.toString("utf8")
      if (!topic.startsWith("initiate/")) published.push({ topic, text })
      if (topic.startsWith("errors/")) {
        const data = (JSON.parse(text) as { data: { payload: string; payloadEncoding: string } }).data
        if (data.payloadEncoding === "base64") decoded.push({ topic, text: Buffer.from(data.payload, "base64").toString("latin1") })
      }
    })
    await ctx.svc.subscribeAsync("#", { qos: 1 })
    ctx.ann = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId, username: "ann", password })
  })
  afterAll(async () => {
    await ctx.ann?.endAsync()
    await ctx.svc?.endAsync()
    await ctx.h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const http = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`http://127.0.0.1:${ctx.h.runtime.httpPort}${path}`, { ...init, headers: { authorization: `Bearer ${ctx.token}`, "content-type": "application/json" } })
    const text = await res.text()
    answers.push(text)
    return { status: res.status, body: JSON.parse(text) as any }
  }
  const count = (f: (m: { topic: string; text: string }) => boolean) => published.filter(f).length
  const until = async (what: string, done: () => boolean) => {
    for (const deadline = Date.now() + 30_000; !done(); await sleep(50)) if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
  }
  /** Until nothing more is published for a while. */
  const settle = async () => {
    for (let seen = -1; seen !== published.length; await sleep(400)) {
      seen = published.length
      await ctx.h.runtime.idle()
    }
  }

  const order = (customerId: string, c: string, extra: Record<string, unknown> = {}) => ({
    customerId,
    email: `${customerId}@example.com`,
    items: [{ sku: "BOOK-2", qty: 1, price: 3 }],
    payment: { card: c },
    ...extra
  })
  const send = (topic: string, payload: string | Buffer) => ctx.ann.publishAsync(topic, payload, { qos: 1 })

  /** Publishes one message of every error kind, each with its own card, and waits for what follows. */
  const run = async (b: Batch) => {
    const n = ++serial
    const rejections = count((m) => m.topic.startsWith("errors/"))
    const entries = count((m) => m.topic === "events/dashboard-entry-added")
    const failedWorkflows = count((m) => m.topic === "events/workflow-failed")
    cards.push(b.malformed, b.notUtf8, b.asNumber, b.spaced, b.unknownTopic, b.oversized, b.unknownSku, b.echoed, b.random, b.restart, b.trade, b.refused, b.url)
    const envelope = (data: unknown) => JSON.stringify({ id: randomUUID(), type: "place-order", replyTo: `reply/${clientId}/orders`, data })

    // Refused at the door: malformed JSON, not UTF-8, schema violations, an unknown topic, too large.
    await send("initiate/place-order", `{"customerId": "m-${n}", "payment": {"card": "${typed(b.malformed, b.separator)}"`)
    // (the reason quotes this one's type)
    await send("initiate/place-order", JSON.stringify({ id: randomUUID(), type: typed(b.malformed, b.separator), data: {} }))
    await send("initiate/place-order", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`{"card": "${b.notUtf8}"}`)]))
    await send("initiate/place-order", JSON.stringify(order(`n-${n}`, "CARD")).replace('"CARD"', b.asNumber))
    await send("initiate/place-order", JSON.stringify(order(`s-${n}`, typed(b.spaced, b.separator), { email: `card ${b.spaced}` })))
    // Too short to be a card, but in the field the app marks sensitive: masked all the same.
    await send("initiate/place-order", JSON.stringify(order(`k-${n}`, b.short.slice(0, 4 + (b.short.length % 8)))))
    await send(`initiate/card-${b.unknownTopic}`, JSON.stringify(order(`t-${n}`, b.unknownTopic)))
    await send("initiate/place-order", JSON.stringify(order(`o-${n}`, b.oversized, { pad: "x".repeat(maxPayloadBytes) })))
    // Failed in processing: an unknown SKU (a request, so a failed reply too), an error that
    // echoes the input, the payment gateway failing; declined and random cards go through.
    await send("initiate/place-order", envelope(order(`u-${n}`, b.unknownSku, { items: [{ sku: `NOPE-${b.unknownSku}`, qty: 1, price: 1 }] })))
    await send("initiate/place-order", JSON.stringify(order(`echo-${n}`, b.echoed)))
    await send("initiate/place-order", envelope(order(`g-${n}`, failingCard)))
    await send("initiate/place-order", envelope(order(`d-${n}`, declinedCard)))
    await send("initiate/place-order", envelope(order(`r-${n}`, b.random)))
    // The workflow event pattern: a trade that fails with its input echoed goes to the dashboard.
    await send("initiate/place-trade", JSON.stringify({ id: randomUUID(), type: "place-trade", data: { account: `ACC-${(n % 9) + 1}`, symbol: typed(b.trade, b.separator), side: "buy", quantity: 1 } }))

    // A publish the broker refuses (logged with its topic), and HTTP requests for what does not exist.
    const refused = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: `${clientId}-${n}`, username: "ann", password })
    refused.publish(`orders/${typed(b.refused, "-")}`, "{}", { qos: 1 })
    await until("the refusal", () => ctx.h.logger.lines.filter((l) => l.includes("publish refused")).length >= n)
    refused.end(true)
    expect((await http(`/errors/${b.url}`)).status).toBe(404)
    if (topology === "mediator") expect((await http(`/workflows/${b.url}`)).status).toBe(404)

    // Eight refused at the door, three failed in processing.
    await until("every rejection", () => count((m) => m.topic.startsWith("errors/")) >= rejections + 11)
    await until("the dashboard entry", () => count((m) => m.topic === "events/dashboard-entry-added") > entries)
    // An operator discards it (the account's later trades go on), with a note that quotes the card.
    const open = (await http("/dashboard?status=open&limit=1000")).body.entries as ReadonlyArray<{ id: string }>
    for (const e of open) expect((await http(`/dashboard/${e.id}/discard`, { method: "POST", body: JSON.stringify({ reason: `symbol was card ${b.trade}` }) })).status).toBe(200)
    if (topology === "mediator") {
      await until("the failed workflows", () => count((m) => m.topic === "events/workflow-failed") >= failedWorkflows + 2)
      await settle()
      // An operator restarts the failed payment with another card, after a body that is not JSON.
      const failed = (await http("/workflows?status=failed&limit=1000")).body.workflows as ReadonlyArray<{ id: string; input: { customerId: string } }>
      const payment = failed.find((w) => w.input.customerId === `g-${n}`)
      expect(payment, "the workflow whose payment failed").toBeDefined()
      for (const w of failed) await http(`/workflows/${w.id}`)
      expect((await http(`/workflows/${payment!.id}/restart`, { method: "POST", body: `card=${typed(b.restart, " ")}` })).status).toBe(400)
      // The new card shows as much of itself in the answer as a card number would: nothing, when it is short.
      const restarted = await http(`/workflows/${payment!.id}/restart`, { method: "POST", body: JSON.stringify({ payment: { card: b.restart.slice(0, 11) } }) })
      expect(restarted.status).toBe(200)
      expect(restarted.body.input?.payment.card ?? "****").toBe("****")
    }
    await settle()
  }

  /** What the runtime logged, e-mailed and answered over HTTP so far. */
  const everything = async (): Promise<ReadonlyArray<{ where: string; text: string }>> => {
    await http("/errors?limit=1000")
    await http("/dashboard?status=all&limit=1000")
    await http(`/workflows?limit=1000`)
    const store = ctx.h.runtime.store
    const emails = await store.run(store.query("SELECT message FROM emails").all())
    return [
      ...published.map((m) => ({ where: `published on ${m.topic}`, text: `${m.topic} ${m.text}` })),
      ...decoded.map((m) => ({ where: `published in base64 on ${m.topic}`, text: m.text })),
      ...answers.map((text) => ({ where: "HTTP answer", text })),
      ...ctx.h.logger.lines.map((text) => ({ where: "log line", text })),
      ...emails.map((r) => ({ where: "e-mail", text: String(r.message) }))
    ]
  }

  it("masks every card number in what is published, logged, e-mailed and answered, whatever the error", async () => {
    await fc.assert(
      fc.asyncProperty(batch, async (b) => {
        await run(b)
        const all = await everything()
        for (const { where, text } of all) {
          expect(digitRuns(text), `${where}: ${text}`).toEqual([])
          for (const c of cards) expect(text.replace(/[ -]/g, ""), `${where}: ${text}`).not.toContain(c)
          for (const v of cardFields(text)) expect(v, `the card field ${where}: ${text}`).toMatch(/^\*{4}([0-9]{4})?$/)
        }
        // Every kind of error was there to leak.
        const rejected = published.filter((m) => m.topic.startsWith("errors/")).map((m) => JSON.parse(m.text).data as { kind: string; processor?: string })
        expect(new Set(rejected.map((r) => r.kind))).toEqual(new Set(["malformed-json", "schema-violation", "unknown-topic", "oversized-payload", "processing-failed"]))
        expect(new Set(rejected.map((r) => r.processor).filter((p) => p !== undefined))).toEqual(new Set(["order-placement", "echo", "payment"]))
        const types = new Set(published.map((m) => JSON.parse(m.text).type as string))
        const expectedTypes = topology === "mediator" ? ["reply", "workflow-failed", "workflow-restarted", "workflow-completed"] : ["request-failed", "payment-denied"]
        for (const t of ["dashboard-entry-added", "dashboard-entry-discarded", ...expectedTypes]) expect(types).toContain(t)
        expect(all.filter((x) => x.where === "e-mail").length).toBeGreaterThan(0)
        // What the masks leave: the last four digits, where an operator needs to tell cards apart.
        const recent = (await http("/errors?limit=1000")).body.recent as ReadonlyArray<{ kind: string; payload: string }>
        expect(recent.find((r) => r.payload.includes(`u-${serial}`))?.payload).toContain(`****${b.unknownSku.slice(-4)}`)
      }),
      { numRuns: propertyRuns, endOnFailure: true }
    )
  }, 30_000 + propertyRuns * 15_000)
})
