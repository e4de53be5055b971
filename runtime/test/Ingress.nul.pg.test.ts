/**
 * The ingress on PostgreSQL with what PostgreSQL cannot store in a TEXT column: a NUL character.
 * A payload with a raw NUL byte (not JSON: the parse error quotes it in the rejection's reason), or
 * an envelope whose id, key or correlation holds `\u0000` (valid JSON, a valid envelope). Each is a
 * bad message, rejected; the messages after it are forwarded (the drain forwards the log in order:
 * one entry failing its transaction again and again held every later one back).
 */
import { afterAll, describe, expect, it } from "vitest"
import { Result } from "effect"
import { Log, Topics, type Envelope } from "@baton/core"
import { Inbox, IngressLog, Outbox, Postgres, Rejections } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Ingress from "../src/Ingress.ts"
import * as Router from "../src/Router.ts"

const contracts = Ingress.contractsOf([{ name: "p", processors: [], initiating: [{ name: "ping", decode: Result.succeed }] }])

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const ingressOn = async () => {
  const schema = await freshSchema()
  cleanups.push(schema.drop)
  const store = await Postgres.open({ url: schema.url, poolSize: 4 })
  cleanups.push(() => store.close())
  const outbox = await Outbox.make(store)
  const inbox = await Inbox.make(store)
  const rejections = await Rejections.make(store)
  const reject = ErrorPath.make({ outbox, rejections, logger: Log.silent })
  const log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16 })
  const router = Router.make(inbox)
  const delivered: Array<Envelope.Envelope> = []
  router.add(Topics.accepted("ping"), { name: "p", schedule: (event: Envelope.Envelope) => void delivered.push(event) })
  const ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log, outbox, reject, router, logger: Log.silent })
  await ingress.start(() => undefined)
  return { ingress, delivered, rejections }
}

describe("Ingress on PostgreSQL: a message with a NUL character", () => {
  const bad: ReadonlyArray<readonly [string, string]> = [
    ["a raw NUL byte (not JSON)", '{"id":\u0000}'],
    ["a NUL in the envelope's id", JSON.stringify({ id: "e\u0000", type: "ping", data: {} })],
    ["a NUL in the envelope's key", JSON.stringify({ id: "e-k", type: "ping", key: "k\u0000", data: {} })]
  ]
  for (const [what, payload] of bad)
    it(`${what}: rejected, the next one forwarded`, async () => {
      const { ingress, delivered, rejections } = await ingressOn()
      await ingress.receive("initiate/ping", Buffer.from(payload), null).catch(() => undefined)
      await ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ id: "good", type: "ping", data: {} })), null)
      await ingress.forwardNow().catch(() => undefined)
      await ingress.forwardNow().catch(() => undefined)
      expect(delivered.map((e) => e.id)).toEqual(["good"])
      expect(Object.values(await rejections.counts()).reduce((a, b) => a + b, 0)).toBe(1)
    }, 30_000)
})
