/**
 * Apps as a user writes them: modules importing only `@baton/sdk`, loaded by path (`BATON_APP`),
 * on the real runtime (embedded broker on an ephemeral port, SQLite in a temp dir, PostgreSQL).
 * The modules are written in a temporary directory inside the repository, so `@baton/sdk` resolves.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { freshSchema } from "@baton/testkit/postgres"
import { AppLoadError } from "../src/Apps.ts"
import { EventVersionError } from "../src/EventVersions.ts"
import { collect, connect, startRuntime } from "./support.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const dir = mkdtempSync(join(fileURLToPath(new URL(".", import.meta.url)), ".apps-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Writes an app module and answers the path BATON_APP names it by. */
const write = (name: string, source: string): string => {
  const path = join(dir, name)
  writeFileSync(path, source)
  return path
}

const shop = write(
  "shop.ts",
  `import { Baton, Effect, Schema, SqlClient } from "@baton/sdk"
const PlaceOrder = Baton.initiating("place-order", Schema.Struct({ orderId: Schema.String, total: Schema.Finite }), { key: (o) => o.orderId })
const OrderAccepted = Baton.event("order-accepted", Schema.Struct({ orderId: Schema.String, total: Schema.Finite }))
const OrderShipped = Baton.event("order-shipped", Schema.Struct({ orderId: Schema.String }))
export default Baton.app({
  name: "shop",
  initiating: [PlaceOrder],
  events: [OrderAccepted, OrderShipped],
  migrations: [{ name: "shop-1", sql: "CREATE TABLE shop_orders (id TEXT PRIMARY KEY, total REAL NOT NULL)" }],
  processors: [
    Baton.processor({
      name: "accept",
      on: PlaceOrder,
      handle: (event) =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql\`INSERT INTO shop_orders (id, total) VALUES (\${event.data.orderId}, \${event.data.total})\`
          return [OrderAccepted.make(event.data)]
        })
    }),
    Baton.processor({ name: "ship", on: OrderAccepted, handle: (event) => Effect.succeed([OrderShipped.make({ orderId: event.data.orderId })]) })
  ]
})
`
)

describe("a user's app loaded by path", () => {
  it("runs beside a reference app: an initiating event over MQTT becomes its processing events and its table's row", async () => {
    const h = await startRuntime({ apps: [shop, "ping"] })
    const client = await connect(h.url)
    try {
      const events = await collect(client, ["events/#"])
      await client.publishAsync("initiate/place-order", JSON.stringify({ orderId: "o-1", total: 12.5 }), { qos: 1 })
      await client.publishAsync("initiate/ping", JSON.stringify({ n: 7 }), { qos: 1 })
      await events.until((all) => all.some((r) => r.envelope.type === "order-shipped") && all.some((r) => r.envelope.type === "pong"), 20_000, "order-shipped and pong")
      const byType = new Map(events.received.map((r) => [r.envelope.type, r]))
      expect(byType.get("order-accepted")).toMatchObject({ topic: "events/order-accepted", envelope: { key: "o-1", data: { orderId: "o-1", total: 12.5 } } })
      expect(byType.get("order-shipped")?.envelope.data).toEqual({ orderId: "o-1" })
      expect(byType.get("pong")?.envelope.data).toEqual({ n: 7 })
      expect(await h.runtime.store.run(h.runtime.store.query("SELECT id, total FROM shop_orders").all())).toEqual([{ id: "o-1", total: 12.5 }])
      expect(h.logger.lines.find((l) => l.includes("apps running"))).toContain("apps=shop,ping")
    } finally {
      await client.endAsync()
      await h.stop()
    }
  })
})

/** What a broken app gets at start: the error `Runtime.start` fails with, and the one line `pnpm start` prints. */
const broken: ReadonlyArray<{ readonly name: string; readonly file?: string; readonly source?: string; readonly message: RegExp }> = [
  { name: "a missing module", file: "missing.ts", message: /^app '.*missing\.ts': no module at .*missing\.ts$/ },
  {
    name: "a module that throws on import",
    file: "throws.ts",
    source: `throw new Error("SHOP_SMTP_URL is not set")\nexport default 1\n`,
    message: /^app '.*throws\.ts' \(.*\) failed to load: SHOP_SMTP_URL is not set$/
  },
  {
    name: "a default export that is not an app",
    file: "not-an-app.ts",
    source: `export default { name: "shop", processors: [] }\nexport const helper = () => 1\n`,
    message: /has no app as its default export \(its default export is an object with keys name, processors\); it exports helper: end it with `export default Baton\.app\(\{ \.\.\. \}\)` from @baton\/sdk$/
  },
  {
    name: "no default export",
    file: "named.ts",
    source: `import { Baton } from "@baton/sdk"\nexport const shop = Baton.app({ name: "shop", initiating: [], processors: [] })\n`,
    message: /has no app as its default export; it exports shop: end it with/
  },
  {
    name: "an app whose make throws (a bad migration)",
    file: "bad-migration.ts",
    source: `import { Baton } from "@baton/sdk"\nexport default Baton.app({ name: "badmig", initiating: [], processors: [], migrations: [{ name: "badmig-1", sql: "CREATE TABLE (" }] })\n`,
    message: /^app 'badmig' failed to start: .*syntax error/
  },
  {
    name: "an event at version 2 without its upcaster",
    file: "no-upcaster.ts",
    source: `import { Baton, Schema } from "@baton/sdk"\nconst E = Baton.event("measured", Schema.Struct({ v: Schema.Finite }), { version: 2 })\nexport default Baton.app({ name: "m", initiating: [], events: [E], processors: [] })\n`,
    message: /failed to load: event 'measured' is at version 2 but declares no upcaster from version 1 to 2: .*Declare upcast: \{ 1: \(data\) => \.\.\. \}/
  }
]

describe("a broken app fails at start with one readable line", () => {
  for (const b of broken) {
    const path = b.source === undefined ? join(dir, b.file!) : write(b.file!, b.source)

    it(`${b.name}: Runtime.start fails with an AppLoadError`, async () => {
      const error = await startRuntime({ apps: [path] }).then(
        (h) => h.stop().then(() => undefined),
        (e: unknown) => e
      )
      expect(error).toBeInstanceOf(AppLoadError)
      expect((error as Error).message).toMatch(b.message)
    })
  }

  it("pnpm start prints one error line, no stack, and exits 1 (a load, a start and a version failure)", async () => {
    const data = mkdtempSync(join(tmpdir(), "baton-apps-"))
    try {
      // The version failure: a schema changed at version 1 after a deployment recorded it.
      const v1 = write("ledger-v1.ts", ledger(`Schema.Struct({ amount: Schema.Finite })`))
      const changed = write("ledger-changed.ts", ledger(`Schema.Struct({ amount: Schema.String })`))
      expect((await main({ BATON_APP: v1, BATON_DATA_DIR: join(data, "v") }, "runtime ready")).code).toBe(0)
      const cases = [
        ...broken.filter((b) => b.file === "not-an-app.ts" || b.file === "bad-migration.ts").map((b) => ({ app: join(dir, b.file!), message: b.message, data: join(data, b.file!) })),
        { app: changed, message: /^app 'ledger': event 'booked' changed its schema at version 1: an incompatible change needs version 2 and an upcaster from 1/, data: join(data, "v") }
      ]
      const runs = await Promise.all(cases.map(async (c) => ({ ...c, ...(await main({ BATON_APP: c.app, BATON_DATA_DIR: c.data })) })))
      for (const { message, code, out } of runs) {
        expect(code, out).toBe(1)
        const errors = out.split("\n").filter((l) => / ERROR /.test(l))
        expect(errors, out).toHaveLength(1)
        expect(errors[0]).toContain("runtime failed reason=")
        expect(JSON.parse(errors[0]!.slice(errors[0]!.indexOf("reason=") + 7))).toMatch(message)
        expect(out).not.toMatch(/^\s+at /m)
      }
    } finally {
      rmSync(data, { recursive: true, force: true })
    }
  }, 120_000)
})

/** An app announcing `booked` with the given schema (at version 1). */
const ledger = (schema: string): string => `import { Baton, Schema } from "@baton/sdk"
export default Baton.app({ name: "ledger", initiating: [], events: [Baton.event("booked", ${schema})], processors: [] })
`

/** `pnpm start` in a child process; stopped with SIGTERM once `ready` is logged, when given. */
const main = (env: Readonly<Record<string, string>>, ready?: string): Promise<{ readonly code: number | null; readonly out: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, "runtime/src/main.ts")], {
      cwd: root,
      env: { ...process.env, BATON_MQTT_PORT: "0", BATON_WS_PORT: "off", BATON_HTTP_PORT: "0", BATON_LOG_FORMAT: "text", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let stopping = false
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString()
      // Once: a second signal during the graceful shutdown would kill it.
      if (ready !== undefined && out.includes(ready) && !stopping) stopping = child.kill("SIGTERM")
    })
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })

const faulty = write(
  "faulty.ts",
  `import { Baton, Effect, Schema } from "@baton/sdk"
const Job = Baton.initiating("job", Schema.Struct({ id: Schema.String, mode: Schema.Literals(["throw", "fail", "bad-data"]) }), { key: (j) => j.id })
const Measure = Baton.event("measure", Schema.Struct({ qty: Schema.Int, unit: Schema.String }))
export default Baton.app({
  name: "faulty",
  initiating: [Job],
  events: [Measure],
  processors: [
    Baton.processor({
      name: "dispatch",
      on: Job,
      handle: (event) => {
        if (event.data.mode === "throw") throw new Error("inventory service down")
        if (event.data.mode === "fail") return Effect.fail({ code: 503, service: "pricing" })
        // Announced without Measure.make: data its schema does not accept.
        return Effect.succeed([{ type: "measure", data: { qty: "many" } }])
      }
    }),
    Baton.processor({ name: "reader", on: Measure, handle: () => Effect.succeed([]) })
  ]
})
`
)

describe("a user's broken handler and rejected data go down the error path, readably", () => {
  it("a throw, a failure and data its schema rejects: each a message-rejected with the reason", async () => {
    const h = await startRuntime({ apps: [faulty], maxAttempts: 2 })
    const client = await connect(h.url)
    try {
      const errors = await collect(client, ["errors/#"])
      for (const mode of ["throw", "fail", "bad-data"]) await client.publishAsync("initiate/job", JSON.stringify({ id: mode, mode }), { qos: 1 })
      await errors.until((all) => all.length >= 3, 20_000, "three rejections")
      const reasons = new Map(errors.received.map((r) => [r.envelope.key, { topic: r.topic, reason: (r.envelope.data as { reason: string }).reason }]))
      expect(reasons.get("throw")).toEqual({ topic: "errors/initiate/job", reason: "dispatch failed after 2 attempt(s): inventory service down" })
      expect(reasons.get("fail")).toEqual({ topic: "errors/initiate/job", reason: `dispatch failed after 2 attempt(s): {"code":503,"service":"pricing"}` })
      // Rejected at once (no retry: the same data would fail again), with each issue's path.
      expect(reasons.get("bad-data")).toEqual({
        topic: "errors/events/measure",
        reason: "reader failed after 1 attempt(s): 'measure' data does not match its schema: qty: Expected number; unit: Missing key"
      })
      expect(errors.received.find((r) => r.envelope.key === "bad-data")?.envelope.data).toMatchObject({
        kind: "processing-failed",
        processor: "reader",
        issues: [{ path: "data.qty", message: "Expected number" }, { path: "data.unit", message: "Missing key" }]
      })
      const logged = h.logger.lines.filter((l) => l.includes("message rejected"))
      expect(logged).toHaveLength(3)
      for (const line of logged) expect(line).not.toMatch(/\[object Object\]|\n\s+at /)
    } finally {
      await client.endAsync()
      await h.stop()
    }
  })
})

/**
 * `measured` across deployments of the `meter` app. Version 1 was `{ celsius }`, version 2 adds the
 * sensor, version 3 is in kelvin. `alarm` reads it; it refuses everything until version 3.
 */
const meter = (file: string, version: 2 | 3, change: string = "") =>
  write(
    file,
    `import { Baton, Effect, Rejected, Schema } from "@baton/sdk"
const Reading = Baton.initiating("reading", Schema.Struct({ sensor: Schema.String, celsius: Schema.Finite }), { key: (r) => r.sensor })
const upcast = { 1: (d) => ({ ...d, sensor: "unknown" }), 2: (d) => ({ kelvin: d.celsius + 273.15, sensor: d.sensor }) }
const Measured = ${
      version === 2
        ? `Baton.event("measured", Schema.Struct({ celsius: Schema.Finite, sensor: Schema.String }), { version: 2, upcast })`
        : `Baton.event("measured", Schema.Struct({ kelvin: Schema.Finite, sensor: Schema.String${change} }), { version: 3, upcast })`
    }
const Alarm = Baton.event("alarm-raised", Schema.Struct({ sensor: Schema.String, kelvin: Schema.Finite }))
export default Baton.app({
  name: "meter",
  initiating: [Reading],
  events: [Measured, Alarm],
  processors: [
    Baton.processor({ name: "record", on: Reading, handle: (e) => Effect.succeed([Measured.make(${version === 2 ? "e.data" : "{ kelvin: e.data.celsius + 273.15, sensor: e.data.sensor }"})]) }),
    Baton.processor({
      name: "alarm",
      on: Measured,
      handle: (e) => ${version === 2 ? `Effect.fail(new Rejected("alarms need kelvin"))` : `Effect.succeed([Alarm.make({ sensor: e.data.sensor, kelvin: e.data.kelvin })])`}
    })
  ]
})
`
  )

const stores = [
  { name: "SQLite", open: async () => ({ overrides: { dataDir: mkdtempSync(join(tmpdir(), "baton-meter-")) }, drop: async () => {} }) },
  {
    name: "PostgreSQL",
    open: async () => {
      const schema = await freshSchema()
      return { overrides: { databaseUrl: schema.url }, drop: schema.drop }
    }
  }
] as const

describe.each(stores)("event versions across deployments ($name)", ({ name, open }) => {
  const v2 = meter(`meter-v2-${name}.ts`, 2)
  const v3 = meter(`meter-v3-${name}.ts`, 3)
  const v3Changed = meter(`meter-v3-changed-${name}.ts`, 3, ", note: Schema.String")
  const v3Added = meter(`meter-v3-added-${name}.ts`, 3, ", note: Schema.optionalKey(Schema.String)")

  it("an event stored at version 2 is read at version 3 (upcast), a rollback and a changed schema fail at start", async () => {
    const db = await open()
    try {
      // Deployment 1: `measured` at version 2; `alarm` refuses it, so it waits on the error path.
      let h = await startRuntime({ ...db.overrides, apps: [v2] })
      let client = await connect(h.url)
      let rejectionId: string
      try {
        const seen = await collect(client, ["events/measured", "errors/#"])
        await client.publishAsync("initiate/reading", JSON.stringify({ sensor: "s1", celsius: 20 }), { qos: 1 })
        await seen.until((all) => all.some((r) => r.topic.startsWith("errors/")), 20_000, "the alarm's rejection")
        expect(seen.received.find((r) => r.topic === "events/measured")?.envelope).toMatchObject({ version: 2, data: { celsius: 20, sensor: "s1" } })
        const rejection = seen.received.find((r) => r.topic === "errors/events/measured")!.envelope.data as { id: string; reason: string }
        expect(rejection.reason).toBe("alarm failed after 1 attempt(s): alarms need kelvin")
        rejectionId = rejection.id
      } finally {
        await client.endAsync()
        await h.stop()
      }

      // Deployment 2: version 3; the stored version-2 event, resubmitted, is upcast 2 → 3.
      h = await startRuntime({ ...db.overrides, apps: [v3] })
      client = await connect(h.url)
      try {
        const alarms = await collect(client, ["events/alarm-raised", "events/measured"])
        const res = await fetch(`http://127.0.0.1:${h.runtime.httpPort}/errors/${encodeURIComponent(rejectionId)}/resubmit`, { method: "POST" })
        expect(res.status, await res.clone().text()).toBe(200)
        await client.publishAsync("initiate/reading", JSON.stringify({ sensor: "s2", celsius: -5 }), { qos: 1 })
        await alarms.until((all) => all.filter((r) => r.envelope.type === "alarm-raised").length >= 2, 20_000, "two alarms")
        const raised = alarms.received.filter((r) => r.envelope.type === "alarm-raised").map((r) => r.envelope.data)
        expect(raised).toEqual(expect.arrayContaining([{ sensor: "s1", kelvin: 293.15 }, { sensor: "s2", kelvin: 268.15 }]))
        expect(alarms.received.find((r) => r.envelope.type === "measured")?.envelope.version).toBe(3)
      } finally {
        await client.endAsync()
        await h.stop()
      }

      // A rollback to version 2, and an incompatible change at version 3, fail at start.
      const failure = (apps: ReadonlyArray<string>) => startRuntime({ ...db.overrides, apps }).then((s) => s.stop().then(() => undefined), (e: unknown) => e as Error)
      const rollback = await failure([v2])
      expect(rollback).toBeInstanceOf(EventVersionError)
      expect(rollback?.message).toMatch(
        /^app 'meter' declares event 'measured' at version 2, but version 3 is recorded \(app 'meter', [^)]+\): events of version 3 may be stored, which version 2 cannot read; declare version 3 or later with its upcasters$/
      )
      const changed = await failure([v3Changed])
      expect(changed).toBeInstanceOf(EventVersionError)
      expect(changed?.message).toMatch(/^app 'meter': event 'measured' changed its schema at version 3: an incompatible change needs version 4 and an upcaster from 3 /)
      // An optional field added at the same version is compatible both ways.
      h = await startRuntime({ ...db.overrides, apps: [v3Added] })
      await h.stop()
    } finally {
      await db.drop()
      if ("dataDir" in db.overrides) rmSync(db.overrides.dataDir, { recursive: true, force: true })
    }
  })
})

const lab = write(
  "lab.ts",
  `import { Baton, Effect, Schema } from "@baton/sdk"
const Sample = Baton.initiating("sample", Schema.Struct({ sensor: Schema.String, celsius: Schema.Finite }), { key: (s) => s.sensor })
// At version 3: data built now must not go through the upcasters meant for versions 1 and 2.
const Measured = Baton.event("measured", Schema.Struct({ kelvin: Schema.Finite, sensor: Schema.String }), {
  version: 3,
  upcast: { 1: (d) => ({ ...d, sensor: "unknown" }), 2: (d) => ({ kelvin: d.celsius + 273.15, sensor: d.sensor }) }
})
const Alarm = Baton.event("alarm-raised", Schema.Struct({ sensor: Schema.String, kelvin: Schema.Finite }))
export default Baton.app({
  name: "lab",
  initiating: [Sample],
  events: [Measured, Alarm],
  processors: [Baton.processor({ name: "alarm", on: Measured, handle: (e) => Effect.succeed([Alarm.make(e.data)]) })],
  mediation: {
    rules: [{ type: "sample", kind: "hard", workflow: "check" }],
    workflows: [
      {
        name: "check",
        domain: "lab",
        steps: [
          {
            name: "alarm",
            commands: [
              // By hand: the version its data follows ...
              { name: "alarm", channel: "alarm", type: Measured.type, version: Measured.version, data: (d) => Measured.make({ kelvin: d.input.celsius + 273.15, sensor: d.input.sensor }).data },
              // ... or by the event, which says it.
              Measured.command({ name: "alarm-again", channel: "alarm", data: (d) => ({ kelvin: d.input.celsius + 274.15, sensor: d.input.sensor }) })
            ]
          }
        ],
        summary: (d) => ({ alarms: Object.values(d.results).flat().map((r) => r.data) })
      }
    ]
  }
})
`
)

describe("the mediator topology", () => {
  it("a workflow's command carries its event's version: the processor reads it at version 3 without upcasting", async () => {
    const h = await startRuntime({ apps: [lab], topology: "mediator" })
    const client = await connect(h.url)
    try {
      const events = await collect(client, ["events/#", "errors/#"])
      await client.publishAsync("initiate/sample", JSON.stringify({ sensor: "s9", celsius: 1 }), { qos: 1 })
      await events.until((all) => all.some((r) => r.envelope.type === "workflow-completed" || r.topic.startsWith("errors/")), 20_000, "the workflow's end")
      expect(events.received.filter((r) => r.topic.startsWith("errors/")).map((r) => r.envelope.data)).toEqual([])
      expect(events.received.find((r) => r.envelope.type === "workflow-completed")?.envelope.data).toMatchObject({ outcome: "completed", alarms: expect.arrayContaining([{ sensor: "s9", kelvin: 274.15 }, { sensor: "s9", kelvin: 275.15 }]) })
    } finally {
      await client.endAsync()
      await h.stop()
    }
  })
})

const vault = write(
  "vault.ts",
  `import { Baton, Effect, Rejected, Schema } from "@baton/sdk"
const Deposit = Baton.initiating("deposit", Schema.Struct({ account: Schema.String, cents: Schema.Int }), { key: (d) => d.account })
// Version 1 was in euros.
const Credited = Baton.event("credited", Schema.Struct({ account: Schema.String, cents: Schema.Int }), {
  version: 2,
  upcast: { 1: (d) => ({ account: d.account, cents: Math.round(d.euros * 100) }) }
})
const Booked = Baton.event("booked", Schema.Struct({ account: Schema.String, cents: Schema.Int }))
export default Baton.app({
  name: "vault",
  initiating: [Deposit],
  events: [Credited, Booked],
  processors: [
    Baton.processor({ name: "credit", on: Deposit, handle: (e) => Effect.succeed([Credited.make(e.data)]) }),
    Baton.processor({
      name: "book",
      on: Credited,
      onFailure: "park",
      handle: (e) =>
        e.data.cents < 0 || e.data.cents > 1_000_000 ? Effect.fail(new Rejected(\`cents out of range: \${e.data.cents}\`)) : Effect.succeed([Booked.make(e.data)])
    })
  ],
  // A negative amount is a sign mistake; anything else waits for an operator.
  repairs: { credited: (m) => (m.data.cents < 0 ? { data: { ...m.data, cents: -m.data.cents }, changes: ["cents made positive"] } : undefined) }
})
`
)

describe("versions through the workflow event pattern", () => {
  it("a parked version-2 event, repaired or resubmitted corrected from the dashboard, is read at version 2", async () => {
    const h = await startRuntime({ apps: [vault], maxAttempts: 1 })
    const client = await connect(h.url)
    const port = h.runtime.httpPort
    try {
      const booked = await collect(client, ["events/booked", "errors/#"])
      await client.publishAsync("initiate/deposit", JSON.stringify({ account: "a1", cents: -250 }), { qos: 1 })
      await client.publishAsync("initiate/deposit", JSON.stringify({ account: "a2", cents: 2_000_000 }), { qos: 1 })
      await booked.until((all) => all.some((r) => r.envelope.key === "a1"), 20_000, "a1's repaired deposit booked")
      let entries: ReadonlyArray<{ id: string; key: string; status: string }> = []
      for (const until = Date.now() + 20_000; entries.length === 0 && Date.now() < until; await new Promise((r) => setTimeout(r, 50)))
        entries = ((await (await fetch(`http://127.0.0.1:${port}/dashboard`)).json()) as { entries: typeof entries }).entries.filter((e) => e.key === "a2")
      expect(entries).toMatchObject([{ key: "a2", status: "open" }])
      const res = await fetch(`http://127.0.0.1:${port}/dashboard/${entries[0]!.id}/resubmit`, { method: "POST", body: JSON.stringify({ account: "a2", cents: 900 }) })
      expect(res.status, await res.clone().text()).toBe(200)
      await booked.until((all) => all.some((r) => r.envelope.key === "a2"), 20_000, "a2's corrected deposit booked")
      expect(booked.received.map((r) => [r.topic, r.envelope.data])).toEqual([
        ["events/booked", { account: "a1", cents: 250 }],
        ["events/booked", { account: "a2", cents: 900 }]
      ])
    } finally {
      await client.endAsync()
      await h.stop()
    }
  })
})
