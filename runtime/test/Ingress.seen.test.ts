/**
 * The ids the ingress records as seen (its deduplication of a client's resends) over a real SQLite
 * store: a full envelope's id is recorded and a resend of it forwarded once; a bare object, wrapped
 * in an envelope of the ingress's own (a new id, which no resend can carry), is recorded nowhere
 * and each publish of it is an event of its own. For all mixes of both, in batches forwarded in
 * their append's transaction or by the drain.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { Log, Topics, type Envelope } from "@baton/core"
import { Inbox, IngressLog, Outbox, Rejections, Sqlite } from "@baton/store"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Ingress from "../src/Ingress.ts"
import * as Router from "../src/Router.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 40)
const contracts = Ingress.contractsOf([{ name: "p", processors: [], initiating: [{ name: "ping", decode: Result.succeed }] }])
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

/** An ingress on a fresh in-memory store, forwarding inline (`inline`) or through its drain. */
const ingressOn = async (inline: boolean) => {
  const store = await Sqlite.open({ path: ":memory:" })
  const outbox = await Outbox.make(store)
  const inbox = await Inbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  let ingress: Ingress.Ingress | undefined
  const log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16, ...(inline ? { inline: { forwarder: () => ingress!.inline.forwarder(), settled: () => ingress!.inline.settled(), again: (error) => ingress!.inline.again(error) } } : {}) })
  const router = Router.make(inbox)
  const delivered: Array<Envelope.Envelope> = []
  router.add(Topics.accepted("ping"), { name: "p", schedule: (event: Envelope.Envelope) => void delivered.push(event) })
  ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log, outbox, reject, router, inline, logger: Log.silent })
  await ingress.start(() => undefined)
  const seen = async () => (await store.run(store.query("SELECT envelope_id FROM ingress_seen ORDER BY envelope_id").all())).map((r) => String(r.envelope_id))
  return { store, ingress, delivered, seen }
}

describe("Ingress: the ids it records as seen", () => {
  it("records a full envelope's id, and nothing for a bare object it wraps", async () => {
    const { store, ingress, delivered, seen } = await ingressOn(true)
    try {
      await ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ n: 1 })), null)
      await ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ id: "e-1", type: "ping", data: { n: 2 } })), null)
      expect(delivered.map((e) => e.data)).toEqual([{ n: 1 }, { n: 2 }])
      expect(await seen()).toEqual(["e-1"])
    } finally {
      await store.close()
    }
  })

  it("forwards each full envelope's id once and each bare publish as an event of its own, for all mixes and batches", async () => {
    const step = fc.record({
      /** A full envelope with one of a few ids (a repeat: a client's resend), or a bare object. */
      id: fc.option(fc.constantFrom("e-1", "e-2", "e-3"), { nil: undefined }),
      /** A turn of the event loop before it: a batch of its own rather than with the previous appends. */
      gap: fc.boolean()
    })
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 20 }), fc.boolean(), async (steps, inline) => {
        const { store, ingress, delivered, seen } = await ingressOn(inline)
        try {
          const received: Array<Promise<void>> = []
          for (const [n, s] of steps.entries()) {
            if (s.gap) await tick()
            const payload = s.id === undefined ? { n } : { id: s.id, type: "ping", data: { n } }
            received.push(ingress.receive("initiate/ping", Buffer.from(JSON.stringify(payload)), null))
          }
          await Promise.all(received)
          await ingress.forwardNow()
          const ids = [...new Set(steps.flatMap((s) => (s.id === undefined ? [] : [s.id])))].sort()
          // Each full envelope's first publish, and every bare one, in the order published.
          const expected = steps.flatMap((s, n) => (s.id === undefined || steps.findIndex((t) => t.id === s.id) === n ? [n] : []))
          expect(delivered.map((e) => (e.data as { n: number }).n)).toEqual(expected)
          expect(new Set(delivered.map((e) => e.id)).size).toBe(delivered.length)
          expect(await seen()).toEqual(ids)
        } finally {
          await store.close()
        }
      }),
      { numRuns: runs }
    )
  })
})
