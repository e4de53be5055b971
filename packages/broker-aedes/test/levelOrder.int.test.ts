/**
 * The disk sessions store (aedes-persistence-level, patched: #inOrder) settles each client id's
 * store operations in the order they were submitted, whatever the order LevelDB's writes complete
 * in: Aedes sends a live message to a persistent session once its enqueue has settled, then once
 * its update has, so the session gets its messages in that order. A real LevelDB on disk, each of
 * its operations' completion let through in an order fast-check's scheduler picks (the thread
 * pool's, made adversarial). The operations as Aedes submits them: each message's enqueue for the
 * sessions its topic reaches (one or several: outgoingEnqueueCombi; one: outgoingEnqueue, as
 * client.publish), each session's update once the enqueue has settled, its clear (the PUBACK) once
 * the update has. For every session, each kind settles in message order, every message is cleared
 * at the end, and nothing is left of the store's per-client order.
 * Red without the patch's #inOrder (enqueues and updates settle in the order the scheduler
 * picks), and with a chain per client for each part of an enqueue for several sessions (it settled
 * once all had: a later message for one of them first).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, expect, it } from "vitest"
import fc from "fast-check"
import { Level } from "level"
import persistenceLevel from "aedes-persistence-level"

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

interface Store {
  readonly asyncPersistence: { readonly chainedClients: number }
  setup(broker: unknown): Promise<void>
  outgoingEnqueue(sub: { clientId: string }, packet: object): Promise<unknown>
  outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: object): Promise<unknown>
  outgoingUpdate(client: { id: string }, packet: object): Promise<unknown>
  outgoingClearMessageId(client: { id: string }, packet: { messageId: number }): Promise<unknown>
  outgoingStream(client: { id: string }): AsyncIterable<unknown>
  destroy(): Promise<unknown>
}

/** Each completion of `db`'s operations waits for `s` to let it through. */
const scheduled = (db: Level<string, unknown>, s: fc.Scheduler): Level<string, unknown> => {
  const raw = db as unknown as Record<string, (...args: Array<unknown>) => unknown>
  for (const name of ["get", "put", "del"]) {
    const op = raw[name]!.bind(db)
    raw[name] = (...args) => s.schedule(op(...args) as Promise<unknown>, name)
  }
  const batch = raw.batch!.bind(db)
  raw.batch = (...args) => {
    if (args.length > 0) return s.schedule(batch(...args) as Promise<unknown>, "batch")
    const chained = batch() as { write: () => Promise<unknown> }
    const write = chained.write.bind(chained)
    chained.write = () => s.schedule(write(), "batch.write")
    return chained
  }
  return db
}

const clients = ["a", "b", "c"] as const

it("settles each session's enqueues, updates and clears in submission order, whatever order LevelDB completes them in", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      // Each message: the sessions it is stored for (a non-empty subset), its payload's size, and
      // whether a single session's goes through outgoingEnqueue (client.publish) instead.
      fc.array(
        fc.record({ to: fc.subarray([...clients], { minLength: 1 }), size: fc.integer({ min: 0, max: 4096 }), single: fc.boolean() }),
        { minLength: 1, maxLength: 25 }
      ),
      async (s, messages) => {
        const dir = mkdtempSync(join(tmpdir(), "baton-level-order-"))
        dirs.push(dir)
        const store = persistenceLevel(scheduled(new Level(dir), s)) as unknown as Store
        await store.setup({ id: "broker" })
        const log = { enqueued: new Map<string, Array<number>>(), updated: new Map<string, Array<number>>(), cleared: new Map<string, Array<number>>() }
        const note = (kind: keyof typeof log, id: string, k: number) => {
          const list = log[kind].get(id) ?? []
          list.push(k)
          log[kind].set(id, list)
        }
        const nextId = new Map<string, number>()
        let outstanding = 0
        const failures: Array<unknown> = []
        const fail = (err: unknown) => {
          failures.push(err)
          outstanding--
        }
        messages.forEach(({ to, size, single }, k) => {
          const packet = { cmd: "publish", topic: `t/${k % 3}`, payload: Buffer.alloc(size, k), qos: 1, retain: false, dup: false, brokerId: "broker", brokerCounter: k + 1 }
          outstanding += to.length
          const enqueued =
            single && to.length === 1 ? store.outgoingEnqueue({ clientId: to[0]! }, packet) : store.outgoingEnqueueCombi(to.map((clientId) => ({ clientId, topic: "t/#", qos: 1 })), packet)
          enqueued.then(() => {
            for (const id of to) {
              note("enqueued", id, k)
              const messageId = (nextId.get(id) ?? 0) + 1
              nextId.set(id, messageId)
              const client = { id }
              store.outgoingUpdate(client, { ...packet, messageId }).then(() => {
                note("updated", id, k)
                store.outgoingClearMessageId(client, { messageId }).then((cleared) => {
                  note("cleared", id, k)
                  if (cleared === undefined) failures.push(new Error(`${id}'s message ${k} not found by its clear`))
                  outstanding--
                }, fail)
              }, fail)
            }
          }, (err) => {
            for (const _ of to) fail(err)
          })
        })
        while (outstanding > 0) {
          await s.waitAll()
          await new Promise((r) => setImmediate(r))
        }
        try {
          expect(failures).toEqual([])
          for (const id of clients) {
            const mine = messages.flatMap(({ to }, k) => (to.includes(id) ? [k] : []))
            expect({ id, enqueued: log.enqueued.get(id) ?? [], updated: log.updated.get(id) ?? [], cleared: log.cleared.get(id) ?? [] }).toEqual({
              id,
              enqueued: mine,
              updated: mine,
              cleared: mine
            })
          }
          expect(store.asyncPersistence.chainedClients).toBe(0)
        } finally {
          await store.destroy()
        }
        // The store's contents are LevelDB's, the scheduler let through: nothing left of a session.
        const reopened = persistenceLevel(new Level(dir)) as unknown as Store
        await reopened.setup({ id: "broker" })
        for (const id of clients) {
          const left: Array<unknown> = []
          for await (const p of reopened.outgoingStream({ id })) left.push(p)
          expect({ id, left }).toEqual({ id, left: [] })
        }
        await reopened.destroy()
      }
    ),
    { numRuns: 40 }
  )
}, 120_000)
