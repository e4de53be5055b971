/**
 * The ingress over the front's log (`BATON_FRONT=log`, docs/front-thread.md 3.1-3.2) on real
 * SQLite files: initiating events committed in `front/ingress.db`, handed over to baton.db under
 * main's mark. For all sequences of appends (bare objects and full envelopes, a client's resends,
 * several keys) and a kill at each point (a throw there ends that incarnation: its objects
 * dropped, both files reopened, memory gone), or a failure after the hand-over's commit that the
 * same incarnation retries: every committed entry is forwarded once, in order per key; a bare
 * object (recognised by no envelope id) included.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { Log, Topics, type Envelope } from "@baton/core"
import { FrontLog, Inbox, IngressLog, Outbox, Rejections, Sqlite } from "@baton/store"
import type * as Crash from "../src/Crash.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Ingress from "../src/Ingress.ts"
import * as Router from "../src/Router.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 25)
const contracts = Ingress.contractsOf([{ name: "p", processors: [], initiating: [{ name: "ping", decode: Result.succeed, key: (d) => (d as { key: string }).key }] }])
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

class Killed extends Error {}

/**
 * One incarnation of the runtime's ingress on the two files in `dir`: `point` is asked at every
 * kill point (a throw there is the kill or the failure).
 */
const boot = async (dir: string, point: (name: Crash.Point) => void) => {
  const store = await Sqlite.open({ path: join(dir, "baton.db"), checkpointIntervalMs: 0 })
  const front = await FrontLog.open({ path: FrontLog.pathIn(dir), synchronous: "NORMAL", maxBytes: 1024, previewBytes: 16, beforeCommit: () => point("ingress-before-commit") })
  const outbox = await Outbox.make(store)
  const inbox = await Inbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16 })
  const router = Router.make(inbox)
  router.add(Topics.accepted("ping"), { name: "p", schedule: (_: Envelope.Envelope) => undefined })
  const { mark, newest } = await Ingress.frontMark(store, front)
  expect(newest).toBeGreaterThanOrEqual(mark)
  const ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log, outbox, reject, router, logger: Log.silent, source: Ingress.frontSource(store, front, mark), before: [{ source: Ingress.logSource(log) }], point, retryMs: 1 })
  const close = async () => {
    ingress.stop()
    await ingress.idle()
    await front.close()
    await store.close()
  }
  return { ingress, store, front, close }
}

const step = fc.record({
  key: fc.constantFrom("k1", "k2", "k3"),
  /** A bare object (wrapped by the ingress, a new id each time), a full envelope, or a client's resend of the last one. */
  kind: fc.constantFrom("bare", "bare", "envelope", "resend"),
  /** A turn of the event loop before it: a batch of its own rather than with the previous appends. */
  gap: fc.boolean()
})
const scenario = fc.record({
  steps: fc.array(step, { minLength: 1, maxLength: 24 }),
  point: fc.constantFrom<Crash.Point>("ingress-before-commit", "ingress-committed", "handover-committed"),
  /** The pass at the point that throws (past the last one: no throw). */
  at: fc.nat(12),
  /** The throw ends the incarnation (a kill); otherwise the same one goes on (a failure it retries). */
  kill: fc.boolean()
})

describe("Ingress over the front's log", () => {
  it("forwards every committed entry once, in order per key, through kills and failures at each point", async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ steps, point, at, kill }) => {
        const dir = mkdtempSync(join(tmpdir(), "baton-front-ingress-"))
        try {
          let passes = 0
          let dead = false
          const first = await boot(dir, (name) => {
            if (dead) throw new Killed(`dead, at ${name}`)
            if (name !== point || passes++ !== at) return
            if (kill) dead = true
            throw new Killed(`at ${name}`)
          })
          await first.ingress.start(() => undefined)
          const received: Array<Promise<unknown>> = []
          /** The last full envelope sent: a resend is the same bytes again (its key and n). */
          let last: string | undefined
          for (const [n, s] of steps.entries()) {
            if (dead) break
            if (s.gap) await tick()
            const payload =
              s.kind === "bare" ? JSON.stringify({ key: s.key, n }) : s.kind === "resend" && last !== undefined ? last : (last = JSON.stringify({ id: `e-${n}`, type: "ping", data: { key: s.key, n } }))
            received.push(first.ingress.receive("initiate/ping", Buffer.from(payload), null).catch(() => undefined))
          }
          await Promise.all(received)
          // A failure (not a kill) at the point: the same incarnation forwards again, its cursor behind the mark.
          await first.ingress.forwardNow().catch(() => (dead ? undefined : first.ingress.forwardNow()))
          await first.close()

          // The next start: both files reopened, memory gone (nothing throws any more).
          const second = await boot(dir, () => undefined)
          try {
            await second.ingress.start(() => undefined)
            await second.ingress.idle()
            const committed = await second.front.after(0, 1000)
            const rows = await second.store.run(second.store.query("SELECT key, payload FROM inbox ORDER BY rowid").all())
            const forwarded = rows.map((r) => JSON.parse(String(r.payload)) as Envelope.Envelope)
            // Each committed entry's event, in the log's order: a bare one always, a full envelope's id once.
            const expected: Array<{ key: string; n: number }> = []
            const ids = new Set<string>()
            for (const e of committed) {
              const json = JSON.parse(e.payload.toString()) as { id?: string; key?: string; n?: number; data?: { key: string; n: number } }
              if (json.id === undefined) expected.push({ key: json.key!, n: json.n! })
              else if (!ids.has(json.id)) {
                ids.add(json.id)
                expected.push(json.data!)
              }
            }
            const got = forwarded.map((e) => e.data as { key: string; n: number })
            // Once each (bare objects too), and in the log's order within each key.
            expect([...got].sort((a, b) => a.n - b.n)).toEqual([...expected].sort((a, b) => a.n - b.n))
            for (const key of ["k1", "k2", "k3"]) expect(got.filter((g) => g.key === key)).toEqual(expected.filter((g) => g.key === key))
            expect(await second.store.run(second.store.query("SELECT seq FROM front_mark").all())).toEqual(committed.length === 0 ? [] : [expect.objectContaining({ seq: committed[committed.length - 1]!.seq })])
          } finally {
            await second.close()
          }
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      }),
      { numRuns: runs }
    )
  })

  it("prunes the forwarded entries but the newest, then the seen ids up to them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-front-ingress-"))
    try {
      const b = await boot(dir, () => undefined)
      try {
        await b.ingress.start(() => undefined)
        for (const n of [1, 2, 3]) await b.ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ id: `e-${n}`, type: "ping", data: { key: "k1", n } })), null)
        await b.ingress.idle()
        const log = await IngressLog.make(b.store, { maxBytes: 1024, previewBytes: 16 })
        const seen = async () => (await b.store.run(b.store.query("SELECT envelope_id FROM ingress_seen ORDER BY seq").all())).map((r) => String(r.envelope_id))
        expect(await seen()).toEqual(["e-1", "e-2", "e-3"])
        // Received before the epoch: none.
        expect(await Ingress.pruneFront(b.store, b.front, log, new Date(0))).toBe(0)
        expect(await Ingress.pruneFront(b.store, b.front, log, new Date("9999-12-31T00:00:00.000Z"))).toBe(2)
        expect((await b.front.after(0, 10)).map((e) => e.seq)).toEqual([3])
        expect(await seen()).toEqual(["e-3"])
      } finally {
        await b.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("fails with a defect on a hand-over that skips an entry past the mark", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-front-ingress-"))
    try {
      const b = await boot(dir, () => undefined)
      for (const n of [1, 2, 3]) await b.front.append("initiate/ping", Buffer.from(JSON.stringify({ key: "k1", n })), null)
      await b.close()
      // Main's mark for the file at 1 while the source's cursor says 2: entry 3 is handed over where 2 is due.
      const store = await Sqlite.open({ path: join(dir, "baton.db"), checkpointIntervalMs: 0 })
      const front = await FrontLog.open({ path: FrontLog.pathIn(dir), synchronous: "NORMAL", maxBytes: 1024, previewBytes: 16 })
      try {
        await store.run(store.query("INSERT INTO front_mark (log_id, seq) VALUES (?, 1)").run(front.logId))
        const outbox = await Outbox.make(store)
        const inbox = await Inbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16 })
        const fatal: Array<unknown> = []
        const ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log, outbox, reject, router: Router.make(inbox), logger: Log.silent, source: Ingress.frontSource(store, front, 2), fatal: (e) => fatal.push(e) })
        await expect(ingress.start(() => undefined)).rejects.toSatisfy(Ingress.isOutOfOrder)
        expect(await store.run(store.query("SELECT COUNT(*) AS n FROM inbox").get())).toEqual(expect.objectContaining({ n: 0 }))
      } finally {
        await front.close()
        await store.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
