import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { Envelope, Log, Topics } from "@baton/core"
import { freshSchema } from "@baton/testkit/postgres"
import { Inbox, Outbox, Postgres, Sqlite, type Store } from "@baton/store"
import { Parking, WorkflowProcessor } from "@baton/repair"

const cleanups: Array<() => Promise<void>> = []
const dispose = async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
}
afterEach(dispose)

/** The same tests on both stores: the SQL is written once for both. */
let engine: "sqlite" | "pg" = "sqlite"

const open = async (): Promise<Store> => {
  if (engine === "sqlite") {
    const store = await Sqlite.open({ path: ":memory:" })
    cleanups.push(() => store.close())
    return store
  }
  const schema = await freshSchema()
  cleanups.push(() => schema.drop())
  const store = await Postgres.open({ url: schema.url, poolSize: 2 })
  cleanups.push(() => store.close())
  return store
}

const setup = async () => {
  const store = await open()
  const inbox = await Inbox.make(store)
  const outbox = await Outbox.make(store)
  const parking = await Parking.make(store)
  return { store, inbox, outbox, parking }
}

const envelope = (id: string, key: string, data: unknown = {}): Envelope.Envelope => ({
  id,
  type: "place-order",
  key,
  correlationId: id,
  causationId: id,
  occurredAt: new Date(0).toISOString(),
  data
})

const receive = (store: Store, inbox: Inbox.Inbox, e: Envelope.Envelope) =>
  store.transaction(inbox.receive("p", { envelopeId: e.id, topic: "t", key: e.key, payload: Envelope.encode(e) }))

const status = (store: Store, id: string) => store.run(store.query("SELECT status FROM inbox WHERE processor = 'p' AND envelope_id = ?").get(id)).then((r) => r?.status)

// Under `pnpm mutate` (BATON_MUTATE_TESTS set), SQLite in memory only: the SQL is the same on both.
const engines = process.env.BATON_MUTATE_TESTS === undefined ? (["sqlite", "pg"] as const) : (["sqlite"] as const)
for (const kind of engines)
  describe(`on ${kind}`, () => {
    beforeEach(() => {
      engine = kind
    })

    describe("Parking", () => {
      it("holds a key, parks its later messages in order, lets the resubmission pass and drains after the release", async () => {
        const { store, inbox, parking } = await setup()
        for (const id of ["m1", "m2", "m3"]) await receive(store, inbox, envelope(id, "K"))
        await receive(store, inbox, envelope("o1", "other"))
        await store.transaction(Effect.andThen(inbox.settle("p", "m1", "failed"), parking.hold("p", "K", "m1", new Date(1000))))

        expect(await store.transaction(parking.mustWait("p", "K", "m2"))).toBe(true)
        expect(await store.transaction(parking.mustWait("p", "other", "o1"))).toBe(false)
        expect((await store.transaction(parking.park("p", "K", "m2")))?.parked).toBe(1)
        expect((await store.transaction(parking.park("p", "K", "m3")))?.parked).toBe(2)
        expect(await store.transaction(parking.parked("p", "K"))).toBe(2)
        expect(await status(store, "m2")).toBe("parked")
        // Nothing unparks while the key is held.
        expect(await store.transaction(parking.next("p", "K"))).toBeUndefined()

        expect(await store.transaction(parking.resubmitted("p", "K", "m1", "r1"))).toBe(true)
        expect(await store.transaction(parking.resubmitted("p", "K", "other", "r2"))).toBe(false)
        await receive(store, inbox, envelope("r1", "K"))
        expect(await store.transaction(parking.mustWait("p", "K", "r1"))).toBe(false)
        expect((await parking.all()).map((h) => [h.key, h.failedId, h.resubmittedId, h.parked])).toEqual([["K", "m1", "r1", 2]])

        expect(await store.transaction(Effect.andThen(inbox.settle("p", "r1", "done"), parking.release("p", "K")))).toBe(true)
        expect(await store.transaction(parking.release("p", "K"))).toBe(false)
        expect(await store.transaction(parking.held("p", "K"))).toBeUndefined()
        const first = await store.transaction(parking.next("p", "K"))
        expect(first?.envelopeId).toBe("m2")
        expect(JSON.parse(first!.payload).id).toBe("m2")
        expect(await status(store, "m2")).toBe("pending")
        // A newer message waits behind the unparked one.
        await receive(store, inbox, envelope("m4", "K"))
        expect(await store.transaction(parking.mustWait("p", "K", "m4"))).toBe(true)
        expect(await store.transaction(parking.park("p", "K", "m4"))).toBeUndefined()
        await store.transaction(inbox.settle("p", "m2", "done"))
        expect((await store.transaction(parking.next("p", "K")))?.envelopeId).toBe("m3")
        await store.transaction(inbox.settle("p", "m3", "done"))
        expect((await store.transaction(parking.next("p", "K")))?.envelopeId).toBe("m4")
        expect(await store.transaction(parking.next("p", "K"))).toBeUndefined()
      })

      it("for any arrival of messages over a few keys and a failure of one of them: every other key passes, and the held key's messages run after the release in arrival order", async () => {
        const arrivals = fc.record({ keys: fc.array(fc.constantFrom("K", "L", "M"), { minLength: 2, maxLength: 12 }), failAt: fc.nat() })
        await fc.assert(
          fc.asyncProperty(arrivals, async ({ keys, failAt }) => {
            const { store, inbox, parking } = await setup()
            const ids = keys.map((k, i) => `${k}-${i}`)
            const failed = failAt % keys.length
            const held = keys[failed]!
            const ran: Array<string> = []
            // In arrival order: what may run runs (done), the first of the held key fails and holds it, the rest of it parks.
            for (const [i, id] of ids.entries()) {
              await receive(store, inbox, envelope(id, keys[i]!))
              if (i === failed) {
                await store.transaction(Effect.andThen(inbox.settle("p", id, "failed"), parking.hold("p", held, id, new Date(i))))
                const h = await store.transaction(parking.held("p", held))
                expect(h).toEqual({ processor: "p", key: held, failedId: id, resubmittedId: undefined, since: new Date(i).toISOString(), parked: 0, alerted: undefined })
              } else if (await store.transaction(parking.mustWait("p", keys[i]!, id))) {
                expect(keys[i], "only the held key waits").toBe(held)
                expect(i).toBeGreaterThan(failed)
                await store.transaction(parking.park("p", keys[i]!, id))
              } else {
                expect(keys[i] !== held || i < failed, `${id} passed a held key`).toBe(true)
                await store.transaction(inbox.settle("p", id, "done"))
                ran.push(id)
              }
            }
            const later = ids.filter((_, i) => keys[i] === held && i > failed)
            expect(await store.transaction(parking.parked("p", held))).toBe(later.length)
            expect((await store.transaction(parking.held("p", held)))?.parked).toBe(later.length)
            // Discarded: released; then the parked messages drain oldest first (the runtime unparks each in the transaction that finished the one before).
            await store.transaction(parking.release("p", held))
            const drained: Array<string> = []
            for (let next = await store.transaction(parking.next("p", held)); next !== undefined; next = await store.transaction(parking.next("p", held))) {
              drained.push(next.envelopeId)
              await store.transaction(inbox.settle("p", next.envelopeId, "done"))
            }
            expect(drained, "the held key's parked messages, in arrival order").toEqual(later)
            expect(ran).toEqual(ids.filter((_, i) => keys[i] !== held || i < failed))
          })
            // Each run closes its store and drops its schema: kept to the end of the property, a
            // pool per run ran PostgreSQL out of connections ('too many clients already').
            .afterEach(dispose),
          { numRuns: 25 }
        )
        expect(cleanups, "every run closed its store").toHaveLength(0)
      })

      // PostgreSQL: a done mark changes `status`, so its row version is never HOT; the inbox's
      // indexes other than the primary key hold pending (and parked) rows only, so that it adds
      // no entry to them (Inbox's runtime/010-inbox-pending-only, Parking's repair/002).
      if (kind === "pg")
        it("for any mix of messages settled done or failed, settling adds no entry to the inbox's secondary indexes", async () => {
          const { store, inbox, parking } = await setup()
          const indexBytes = async () =>
            Number(
              (
                await store.run(
                  store
                    .query("SELECT SUM(pg_relation_size(indexrelid)) AS n FROM pg_index WHERE indrelid = 'inbox'::regclass AND NOT indisprimary")
                    .get()
                )
              )?.n
            )
          await fc.assert(
            fc.asyncProperty(
              fc.array(fc.record({ key: fc.constantFrom("K", "L", "M"), outcome: fc.constantFrom("done", "failed") }), { minLength: 400, maxLength: 700 }),
              fc.nat(),
              async (messages, parkAt) => {
                await store.run(store.sql.unsafe("TRUNCATE inbox").raw)
                const ids = messages.map((m, i) => `${m.key}-${i}`)
                const parked = ids[parkAt % ids.length]!
                await store.transaction(Effect.forEach(messages, (m, i) => inbox.receive("p", { envelopeId: ids[i]!, topic: "t", key: m.key, payload: "{}" }), { discard: true }))
                await store.transaction(parking.park("p", messages[parkAt % ids.length]!.key, parked))
                const before = await indexBytes()
                await store.transaction(
                  Effect.forEach(messages, (m, i) => (ids[i] === parked ? Effect.void : Effect.asVoid(inbox.settleFirst("p", ids[i]!, m.outcome as "done" | "failed"))), { discard: true })
                )
                expect(await indexBytes()).toBe(before)
                expect(await inbox.pending("p")).toEqual([])
                expect(await store.transaction(parking.parked("p", messages[parkAt % ids.length]!.key))).toBe(1)
              }
            ),
            { numRuns: 5 }
          )
        })

      // SQLite: the inbox's secondary indexes hold the open rows only (Inbox's
      // runtime/011-inbox-pending-only-sqlite, Parking's repair/004), and its planner takes a
      // partial index only for a query that names the index's terms: every read of pending or
      // parked rows must still answer as before, through them, never by a scan of the inbox.
      if (kind === "sqlite")
        it("for any mix of pending, done, failed and parked rows, the inbox's and Parking's reads answer as the model, through indexes that hold the open rows only", async () => {
          type Fate = "pending" | "done" | "failed" | "parked"
          await fc.assert(
            fc
              .asyncProperty(
                fc.array(
                  fc.record({ processor: fc.constantFrom("p", "q"), key: fc.constantFrom("K", "L", "M"), fate: fc.constantFrom<Fate>("pending", "done", "failed", "parked") }),
                  { minLength: 1, maxLength: 60 }
                ),
                fc.integer({ min: 1, max: 7 }),
                async (rows, pageSize) => {
                  const { store, inbox, parking } = await setup()
                  const ids = rows.map((r, i) => `${r.processor}${r.key}-${i}`)
                  for (const [i, r] of rows.entries()) await store.transaction(inbox.receive(r.processor, { envelopeId: ids[i]!, topic: "t", key: r.key, payload: `{"n":${i}}` }))
                  for (const [i, r] of rows.entries())
                    if (r.fate === "parked") expect(await store.transaction(parking.park(r.processor, r.key, ids[i]!))).toBeUndefined()
                    else if (r.fate !== "pending") expect(await store.transaction(inbox.settle(r.processor, ids[i]!, r.fate))).toBe(true)
                  const of = (processor: string, fates: ReadonlyArray<Fate>, key?: string) =>
                    ids.filter((_, i) => rows[i]!.processor === processor && fates.includes(rows[i]!.fate) && (key === undefined || rows[i]!.key === key))
                  for (const processor of ["p", "q"]) {
                    const pending = of(processor, ["pending"])
                    expect((await inbox.pending(processor)).map((e) => e.envelopeId)).toEqual(pending)
                    const paged: Array<string> = []
                    for (let after = 0, page = await inbox.pendingPage(processor, 0, pageSize); page.length > 0; page = await inbox.pendingPage(processor, after, pageSize)) {
                      paged.push(...page.map((e) => e.envelopeId))
                      after = page.at(-1)!.seq
                    }
                    expect(paged).toEqual(pending)
                    expect((await inbox.pendingIn(processor, [0])).map((e) => e.envelopeId)).toEqual(pending)
                    for (const id of ids.filter((_, i) => rows[i]!.processor === processor))
                      expect(await store.transaction(inbox.othersPending(processor, id))).toBe(pending.some((other) => other !== id))
                    for (const key of ["K", "L", "M"]) {
                      const open = of(processor, ["pending", "parked"], key)
                      expect(await store.transaction(parking.parked(processor, key))).toBe(of(processor, ["parked"], key).length)
                      for (const id of of(processor, ["pending"], key)) expect(await store.transaction(parking.mustWait(processor, key, id))).toBe(open.indexOf(id) > 0)
                    }
                  }
                  // Each read of open rows through a partial index (none scans the inbox), and the
                  // indexes hold an entry per open row: none for a settled one.
                  for (const { text } of store.breakdown().filter((b) => / inbox /.test(b.text) && !b.text.startsWith("INSERT"))) {
                    const plan = (await store.run(store.query(`EXPLAIN QUERY PLAN ${text}`).all(...Array.from(text.matchAll(/\?/g), () => null))))
                      .map((r) => String(r.detail))
                      .join(" | ")
                    expect(plan, text).not.toMatch(/SCAN inbox|inbox_pending|inbox_part/)
                    if (/ key = \?/.test(text)) expect(plan, text).toContain("inbox_key")
                    else if (/status = 'pending'/.test(text) && !/envelope_id = \?/.test(text)) expect(plan, text).toContain("inbox_waiting")
                  }
                  const entries = async (index: string) => Number((await store.run(store.query("SELECT COALESCE(SUM(ncell), 0) AS n FROM dbstat WHERE name = ?").get(index)))?.n)
                  const count = (fates: ReadonlyArray<Fate>) => rows.filter((r) => fates.includes(r.fate)).length
                  expect(await entries("inbox_waiting")).toBe(count(["pending"]))
                  expect(await entries("inbox_key")).toBe(count(["pending", "parked"]))
                  // The oldest parked message of each key unparks first.
                  for (const processor of ["p", "q"])
                    for (const key of ["K", "L", "M"]) expect((await store.transaction(parking.next(processor, key)))?.envelopeId).toBe(of(processor, ["parked"], key)[0])
                }
              )
              .afterEach(dispose),
            { numRuns: 50 }
          )
        })

      // A database that the previous version created and used (inbox_key over every row).
      if (kind === "sqlite")
        it("SQLite: an inbox_key of the previous schema is migrated to open rows only, parked messages kept", async () => {
          const store = await open()
          const inbox = await Inbox.make(store)
          await store.migrate(Parking.migrations.filter((m) => m.name !== "repair/004-inbox-key-open-sqlite"))
          const definition = async () => String((await store.run(store.query("SELECT sql FROM sqlite_schema WHERE name = 'inbox_key'").get()))?.sql)
          expect(await definition()).toBe("CREATE INDEX inbox_key ON inbox (processor, key, status)")
          for (const id of ["a", "b", "c", "d"]) await receive(store, inbox, envelope(id, "K"))
          await store.transaction(inbox.settle("p", "a", "failed"))
          const parking = await Parking.make(store)
          expect(await definition()).toBe("CREATE INDEX inbox_key ON inbox (processor, key, status) WHERE status IN ('pending', 'parked')")
          await store.transaction(parking.park("p", "K", "c"))
          await store.transaction(parking.park("p", "K", "d"))
          expect(await store.transaction(parking.parked("p", "K"))).toBe(2)
          expect(await store.transaction(parking.mustWait("p", "K", "c"))).toBe(true)
          await store.transaction(inbox.settle("p", "b", "done"))
          expect((await store.transaction(parking.next("p", "K")))?.envelopeId).toBe("c")
        })

      it("alerts once per hold and reason", async () => {
        const { store, parking } = await setup()
        await store.transaction(parking.hold("p", "K", "m1", new Date(0)))
        expect((await store.transaction(parking.alert("p", "K", "age")))?.alerted).toBe("age")
        expect(await store.transaction(parking.alert("p", "K", "age"))).toBeUndefined()
        expect((await store.transaction(parking.alert("p", "K", "count")))?.alerted).toBe("age,count")
        await store.transaction(parking.alerted("p", "K", "count"))
        expect((await store.transaction(parking.held("p", "K")))?.alerted).toBe("count")
      })
    })

    describe("WorkflowProcessor", () => {
      const handOff = (e: Envelope.Envelope): WorkflowProcessor.HandOff => ({
        processor: "p",
        topic: "commands/place-order",
        envelope: e,
        error: "bad data",
        attempts: [{ attempt: 1, error: "bad data", at: new Date(0).toISOString() }],
        trail: [e.id]
      })

      const make = async () => {
        const s = await setup()
        const routed: Array<string> = []
        const scheduled: Array<string> = []
        const delivered: Array<string> = []
        const wp = await WorkflowProcessor.make({
          store: s.store,
          parking: s.parking,
          outbox: s.outbox,
          repairs: { "place-order": (m) => ((m.data as { fixable?: boolean }).fixable === true ? { data: { fixed: true }, changes: ["fixed"] } : undefined) },
          limits: { maxParked: 10, maxHeldMs: 1000 },
          logger: Log.silent,
          route: (topic, envelope) =>
            Effect.sync(() => {
              routed.push(`${topic} ${envelope.id}`)
              return [() => void delivered.push(envelope.id)]
            }),
          schedule: (processor, parked) => void scheduled.push(`${processor} ${parked.envelopeId}`),
          poke: () => {}
        })
        return { ...s, wp, routed, scheduled, delivered }
      }

      const handle = (store: Store, wp: WorkflowProcessor.WorkflowProcessor, e: Envelope.Envelope) =>
        store.transaction(wp.processor.handle(envelope(`h-${e.id}`, e.key, handOff(e)), undefined))

      it("repairs what it can, resubmitting to the consumer only", async () => {
        const { store, wp, parking } = await make()
        await store.transaction(parking.hold("p", "K", "m1", new Date()))
        const out = await handle(store, wp, envelope("m1", "K", { fixable: true }))
        expect(out.map((n) => n.topic ?? n.type)).toEqual([Topics.resubmit("p"), WorkflowProcessor.events.repaired])
        expect((await store.transaction(parking.held("p", "K")))?.resubmittedId).toBe(out[0]!.id)
        expect((await wp.list("repaired", 10)).map((e) => e.failedId)).toEqual(["m1"])
      })

      it("sends the rest to the dashboard; a discard releases the key and unparks the next; a resubmit routes the message", async () => {
        const { store, inbox, outbox, wp, parking, routed, scheduled, delivered } = await make()
        for (const id of ["m1", "m2"]) await receive(store, inbox, envelope(id, "K"))
        await store.transaction(parking.hold("p", "K", "m1", new Date()))
        await store.transaction(parking.park("p", "K", "m2"))
        const out = await handle(store, wp, envelope("m1", "K"))
        expect(out.map((n) => n.type)).toEqual([WorkflowProcessor.events.added])
        const [entry] = await wp.list("open", 10)
        expect(entry?.failedId).toBe("m1")
        expect((await wp.list("all", 10)).length).toBe(1)

        const discarded = await wp.discard(entry!.id, "wrong")
        expect([discarded.status, discarded.resolution]).toEqual(["discarded", "wrong"])
        expect(scheduled).toEqual(["p m2"])
        expect(await store.transaction(parking.held("p", "K"))).toBeUndefined()
        await expect(wp.discard(entry!.id, "again")).rejects.toThrow(/is discarded/)
        await expect(wp.resubmit("nope", undefined)).rejects.toThrow(/no dashboard entry/)
        expect((await outbox.pending(10)).map((e) => e.topic)).toEqual([Topics.event(WorkflowProcessor.events.discarded), Topics.event(WorkflowProcessor.events.released)])

        await handle(store, wp, envelope("m5", "L"))
        const open = (await wp.list("open", 10))[0]!
        const resubmitted = await wp.resubmit(open.id, { corrected: true })
        expect(resubmitted.status).toBe("resubmitted")
        expect(routed).toEqual([`${Topics.resubmit("p")} ${resubmitted.resolution}`])
        expect(delivered).toEqual([resubmitted.resolution])
      })

      it("sweeps holds past the age limit once", async () => {
        const { store, wp, parking, outbox } = await make()
        await store.transaction(parking.hold("p", "K", "m1", new Date(0)))
        await store.transaction(parking.hold("p", "L", "m2", new Date(5000)))
        expect(await wp.sweep(new Date(5500))).toBe(1)
        expect(await wp.sweep(new Date(5600))).toBe(0)
        expect(await wp.sweep(new Date(9000))).toBe(1)
        expect((await outbox.pending(10)).map((e) => e.topic)).toEqual([Topics.event(WorkflowProcessor.events.alert), Topics.event(WorkflowProcessor.events.alert)])
      })
    })
  })
