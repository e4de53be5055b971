/**
 * The ingress forwarding a batch inside its append's transaction (single instance, embedded
 * broker) over a real SQLite store: for all interleavings of appends, batches that fail to commit,
 * forwarding that fails (drains and inline batches alike), entries a crash left unforwarded and a
 * start in the middle, every committed event is routed
 * once, and no event overtakes an older one of its key (the order of the log).
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
/** Judging the next `faults` events fails (a transient fault inside the forwarding transaction). */
let faults = 0
const decode = (data: unknown) => {
  if (faults > 0) {
    faults--
    throw new Error("transient fault")
  }
  return Result.succeed(data)
}
const contracts = Ingress.contractsOf([{ name: "ping", processors: [], initiating: [{ name: "ping", decode, key: (d) => (d as { key: string }).key }] }])
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

const scenario = fc.record({
  /** Entries a crash left in the log, unforwarded. */
  leftovers: fc.array(fc.constantFrom("k1", "k2", "k3"), { maxLength: 4 }),
  steps: fc.array(
    fc.record({
      key: fc.constantFrom("k1", "k2", "k3"),
      /** A turn of the event loop before it: a batch of its own rather than with the previous appends. */
      gap: fc.boolean(),
      /** Refused (not JSON): written to the error path in the same transaction. */
      bad: fc.nat(9).map((n) => n === 0),
      /** The next forwarding fails (a drain's: its entries stay unforwarded, to be overtaken by none). */
      fault: fc.nat(4).map((n) => n === 0)
    }),
    { minLength: 1, maxLength: 30 }
  ),
  /** The ingress starts before this step. */
  startAt: fc.nat(30),
  /** The batches (counted from 0) that fail before their commit. */
  failing: fc.uniqueArray(fc.nat(12), { maxLength: 3 })
})

describe("Ingress: forwarding inside the append's transaction", () => {
  it("routes every committed event once, never an event before an older one of its key", async () => {
    let inlined = 0
    let left = 0
    await fc.assert(
      fc.asyncProperty(scenario, async ({ leftovers, steps, startAt, failing }) => {
        faults = 0
        const store = await Sqlite.open({ path: ":memory:" })
        try {
          const outbox = await Outbox.make(store)
          const inbox = await Inbox.make(store)
          const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
          const payload = (key: string, n: number, bad = false) => Buffer.from(bad ? "{oops" : JSON.stringify({ key, n }))
          const crashed = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16 })
          for (const [i, key] of leftovers.entries()) await crashed.append("initiate/ping", payload(key, -1 - i), null)

          let batches = 0
          let ingress: Ingress.Ingress | undefined
          const log = await IngressLog.make(store, {
            maxBytes: 1024,
            previewBytes: 16,
            beforeCommit: () => {
              if (failing.includes(batches++)) throw new Error("killed before the commit")
            },
            inline: {
              forwarder: () => {
                const forward = ingress!.inline.forwarder()
                if (forward === undefined) left++
                else inlined++
                return forward
              },
              settled: () => ingress!.inline.settled(),
              again: (error) => ingress!.inline.again(error)
            }
          })
          const router = Router.make(inbox)
          const delivered: Array<{ readonly key: string; readonly n: number }> = []
          router.add(Topics.accepted("ping"), { name: "p", schedule: (event: Envelope.Envelope) => void delivered.push(event.data as { key: string; n: number }) })
          ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log, outbox, reject, router, inline: true, logger: Log.silent })

          // Whether the broker would acknowledge it (settled at once: a failure is an answer too).
          const received: Array<Promise<boolean>> = []
          let started: Promise<number> | undefined
          for (const [n, step] of steps.entries()) {
            if (n === startAt) started = ingress.start(() => undefined)
            if (step.gap) await tick()
            if (step.fault) faults = 1
            received.push(ingress.receive("initiate/ping", payload(step.key, n, step.bad), null).then(() => true, () => false))
          }
          started ??= ingress.start(() => undefined)
          const outcomes = await Promise.all(received)
          // The start-up drain may meet a fault: its entries wait for the next one.
          await started.catch(() => 0)
          // A fault still armed fails one more drain.
          await ingress.forwardNow().catch(() => ingress.forwardNow())

          const rows = await store.run(store.query("SELECT seq, payload, forwarded_at FROM ingress_log ORDER BY seq").all())
          expect(rows.filter((r) => r.forwarded_at === null)).toEqual([])
          const logged = rows.map((r) => Buffer.from(r.payload as Uint8Array).toString()).filter((p) => p !== "{oops").map((p) => JSON.parse(p) as { key: string; n: number })
          // What was acknowledged is in the log; what failed is not.
          const acked = steps.flatMap((s, n) => (outcomes[n]! && !s.bad ? [n] : []))
          expect(logged.map((e) => e.n).filter((n) => n >= 0).sort((a, b) => a - b)).toEqual(acked)
          // Each routed once, in the order of the log per key (deliveries and the inbox alike).
          const inboxed = (await store.run(store.query("SELECT payload FROM inbox ORDER BY rowid").all())).map((r) => (JSON.parse(String(r.payload)) as Envelope.Envelope).data)
          for (const key of ["k1", "k2", "k3"]) {
            const inLog = logged.filter((e) => e.key === key)
            expect(delivered.filter((e) => e.key === key), key).toEqual(inLog)
            expect(inboxed.filter((e) => (e as { key: string }).key === key), key).toEqual(inLog)
          }
        } finally {
          await store.close()
        }
      }),
      { numRuns: runs }
    )
    // Both paths were taken (else the property says nothing about their interleaving).
    expect(inlined).toBeGreaterThan(0)
    expect(left).toBeGreaterThan(0)
  })
})
