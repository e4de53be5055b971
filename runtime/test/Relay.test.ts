import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log } from "@baton/core"
import { Outbox, Sqlite, type Store } from "@baton/store"
import * as Relay from "../src/Relay.ts"

describe("Relay", () => {
  it("publishes every entry, in order, at least once, whatever publishes fail, and empties the outbox", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.array(fc.boolean(), { maxLength: 60 }), async (n, failures) => {
        const store = await Sqlite.open({ path: ":memory:" })
        const outbox = await Outbox.make(store)
        await store.transaction(Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => outbox.add("events/e", String(i)), { discard: true }))
        const published: Array<number> = []
        let call = 0
        const relay = Relay.make({
          outbox,
          logger: Log.silent,
          batch: 7,
          retryMs: 1,
          publish: async (_t, payload) => {
            if (failures[call++ % Math.max(1, failures.length)] === true && call < 200) throw new Error("broker away")
            published.push(Number(payload))
          }
        })
        relay.poke()
        const until = Date.now() + 5000
        while ((await outbox.size()) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 2))
        await relay.close()
        expect(await outbox.size()).toBe(0)
        // Every entry went out; a retried batch may repeat entries, never reorder what was first sent.
        expect(new Set(published)).toEqual(new Set(Array.from({ length: n }, (_, i) => i)))
        const firsts = published.filter((p, i) => published.indexOf(p) === i)
        expect(firsts).toEqual([...firsts].sort((a, b) => a - b))
        await store.close()
      }),
      { numRuns: 30 }
    )
  })

  it("for any interleaving of commits, offers (in or out of order, or none), drains, publish failures and crashes: every entry is published at least once, marked sent once, and never before an older entry of its key", async () => {
    type Action =
      | { readonly _tag: "commit"; readonly keys: ReadonlyArray<number>; readonly via: "offer" | "poke" | "late" }
      | { readonly _tag: "tick"; readonly turns: number }
      | { readonly _tag: "late"; readonly reversed: boolean }
      | { readonly _tag: "crash" }
    const action: fc.Arbitrary<Action> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ _tag: fc.constant("commit" as const), keys: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 3 }), via: fc.constantFrom("offer" as const, "poke" as const, "late" as const) }) },
      { weight: 3, arbitrary: fc.record({ _tag: fc.constant("tick" as const), turns: fc.integer({ min: 0, max: 2 }) }) },
      { weight: 2, arbitrary: fc.record({ _tag: fc.constant("late" as const), reversed: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ _tag: fc.constant("crash" as const) }) }
    )
    /** 0: resolves at once, 1: next turn, 2: two turns later, 3: fails (the broker away). */
    const publishes = fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 20 })
    /** Lets the relay go on for `turns` turns of the event loop. */
    const pause = async (turns: number) => {
      for (let i = 0; i <= turns; i++) await new Promise((r) => setImmediate(r))
    }
    await fc.assert(
      fc.asyncProperty(fc.array(action, { maxLength: 30 }), publishes, async (actions, outcomes) => {
        const store = await Sqlite.open({ path: ":memory:" })
        try {
          const outbox = await Outbox.make(store)
          /** Each entry's key and commit order, by its payload's `c`. */
          const committed: Array<{ readonly key: number; readonly c: number; readonly seq: number }> = []
          /** What went out on the wire, in order (`c` of each publish), and each live `sent` call's sequence numbers. */
          const wire: Array<number> = []
          const marked: Array<number> = []
          let incarnation = 0
          let calls = 0
          let reads = 0
          const never = new Promise<never>(() => {})
          // A relay incarnation: after a crash (a newer incarnation) nothing of it happens any more.
          const start = () => {
            const mine = ++incarnation
            const alive = () => mine === incarnation
            const relay = Relay.make({
              outbox: {
                ...outbox,
                // A read's answer may come late: what commits meanwhile is not in it.
                pending: async (limit) => {
                  const entries = alive() ? await outbox.pending(limit) : await never
                  const delay = outcomes[reads++ % outcomes.length]!
                  if (delay > 0) await pause(delay - 1)
                  return alive() ? entries : never
                },
                sentRuns: (runs) => {
                  if (!alive()) return never
                  for (const [first, last] of runs) for (let s = first; s <= last; s++) marked.push(s)
                  return outbox.sentRuns(runs)
                }
              },
              logger: Log.silent,
              batch: 3,
              retryMs: 1,
              publish: async (_t, payload) => {
                const outcome = outcomes[calls++ % outcomes.length]!
                if (outcome === 3 && calls < 100) throw new Error("broker away")
                if (outcome > 0) await pause(outcome - 1)
                if (!alive()) return never
                wire.push((JSON.parse(payload) as { c: number }).c)
              }
            })
            relay.poke() // the start-up drain
            return relay
          }
          let relay = start()
          let late: Array<() => void> = []
          for (const a of actions) {
            if (a._tag === "commit") {
              const written = await store.transaction(
                Effect.forEach(a.keys, (key, i) => outbox.added(`events/k${key}`, JSON.stringify({ key, c: committed.length + i }), 1))
              )
              const entries = written.map((e) => e())
              for (const e of entries) committed.push({ ...(JSON.parse(e.payload) as { key: number; c: number }), seq: e.seq })
              const to = relay
              if (a.via === "offer") to.offer(entries)
              else if (a.via === "poke") to.poke()
              else late.push(() => to.offer(entries))
            } else if (a._tag === "tick") await pause(a.turns)
            else if (a._tag === "late") {
              const run = a.reversed ? [...late].reverse() : late
              late = []
              for (const offer of run) offer()
            } else {
              late = [] // a crash loses what was only in memory
              relay = start()
            }
          }
          for (const offer of late) offer()
          const until = Date.now() + 5000
          while (((await outbox.size()) > 0 || wire.length < committed.length) && Date.now() < until) {
            relay.poke()
            await relay.idle()
            await pause(1)
          }
          await relay.close()
          expect(await outbox.size()).toBe(0)
          // At least once on the wire, each marked sent once.
          expect(new Set(wire)).toEqual(new Set(committed.map((e) => e.c)))
          expect([...marked].sort((x, y) => x - y)).toEqual(committed.map((e) => e.seq).sort((x, y) => x - y))
          // Never before an older entry of its key: each publish follows one of every older entry of the key.
          for (const [i, c] of wire.entries()) {
            const key = committed.find((e) => e.c === c)!.key
            const before = new Set(wire.slice(0, i))
            for (const older of committed) if (older.key === key && older.c < c) expect(before.has(older.c), `entry ${c} (key ${key}) went out before ${older.c}`).toBe(true)
          }
        } finally {
          await store.close()
        }
      }),
      { numRuns: 400 }
    )
  })

  it("for any backlog and batch size, with publishes that complete at once: the event loop turns between full batches, and every entry goes out once, in order", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 40 }), async (batch, n) => {
        const store = await Sqlite.open({ path: ":memory:" })
        try {
          const outbox = await Outbox.make(store)
          await store.transaction(Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => outbox.add("events/e", String(i)), { discard: true }))
          const published: Array<number> = []
          // How many had gone out at each turn of the loop while the relay drained.
          const atTurns: Array<number> = []
          let draining = true
          const turn = () => {
            if (!draining) return
            atTurns.push(published.length)
            setImmediate(turn)
          }
          setImmediate(turn)
          const relay = Relay.make({ outbox, logger: Log.silent, batch, publish: async (_t, payload) => void published.push(Number(payload)) })
          relay.poke()
          await relay.idle()
          draining = false
          await relay.close()
          expect(published).toEqual(Array.from({ length: n }, (_, i) => i))
          expect(await outbox.size()).toBe(0)
          // No turn of the loop saw more than one batch more go out than the turn before.
          for (const [i, k] of atTurns.entries()) expect(k - (atTurns[i - 1] ?? 0)).toBeLessThanOrEqual(batch)
          expect(published.length - (atTurns.at(-1) ?? 0)).toBeLessThanOrEqual(batch)
        } finally {
          await store.close()
        }
      }),
      { numRuns: 60 }
    )
  })

  it("with a window, on an in-order transport that may lose what it has not confirmed: never more than the window in flight, nothing started after a failure, every entry published, first sends in order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 2, max: 16 }),
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 40 }),
        async (n, window, batch, steps) => {
          const store = await Sqlite.open({ path: ":memory:" })
          const outbox = await Outbox.make(store)
          await store.transaction(Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => outbox.add("events/e", String(i)), { discard: true }))
          /** Sent, not yet confirmed, in the order sent (the transport confirms in that order). */
          const inFlight: Array<{ readonly i: number; readonly settle: (ok: boolean) => void }> = []
          const published: Array<number> = []
          let most = 0
          const relay = Relay.make({
            outbox,
            logger: Log.silent,
            batch,
            window,
            retryMs: 1,
            publish: (_t, payload) =>
              new Promise<void>((resolve, reject) => {
                inFlight.push({ i: Number(payload), settle: (ok) => (ok ? resolve() : reject(new Error("connection lost"))) })
                most = Math.max(most, inFlight.length)
              })
          })
          relay.poke()
          for (let step = 0; step < 5000 && ((await outbox.size()) > 0 || inFlight.length > 0); step++) {
            await new Promise((r) => setImmediate(r))
            const s = steps[step % steps.length]!
            // 0: the connection lost, what was not confirmed fails (a shutdown's `stopping`);
            // otherwise up to s confirmations, in the order sent.
            if (s === 0 && step < 200) for (const p of inFlight.splice(0)) p.settle(false)
            else for (const p of inFlight.splice(0, Math.max(1, s))) published.push(p.i), p.settle(true)
            await new Promise((r) => setTimeout(r, 2))
          }
          await relay.close()
          expect(most).toBeLessThanOrEqual(window)
          expect(await outbox.size()).toBe(0)
          expect(new Set(published)).toEqual(new Set(Array.from({ length: n }, (_, i) => i)))
          const firsts = published.filter((p, i) => published.indexOf(p) === i)
          expect(firsts).toEqual([...firsts].sort((a, b) => a - b))
          await store.close()
        }
      ),
      { numRuns: 25 }
    )
    // Each step waits at least 2 ms: 25 runs of up to ~60 steps passed 5 s (vitest's default) at load.
  }, 60_000)

  it("runs: splits sequence numbers into maximal runs of consecutive numbers", () => {
    expect(Relay.runs([])).toEqual([])
    expect(Relay.runs([5])).toEqual([[5, 5]])
    expect(Relay.runs([1, 2, 3])).toEqual([[1, 3]])
    expect(Relay.runs([1, 3])).toEqual([
      [1, 1],
      [3, 3]
    ])
    expect(Relay.runs([1, 2, 4, 5, 6, 9])).toEqual([
      [1, 2],
      [4, 6],
      [9, 9]
    ])
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 200 }), { maxLength: 60 }), (raw) => {
        const seqs = [...raw].sort((a, b) => a - b)
        const rs = Relay.runs(seqs)
        // Together the runs cover exactly the input, in order ...
        expect(rs.flatMap(([first, last]) => Array.from({ length: last - first + 1 }, (_, i) => first + i))).toEqual(seqs)
        // ... and are maximal: no run ends right before the next begins.
        for (let i = 1; i < rs.length; i++) expect(rs[i]![0]).toBeGreaterThan(rs[i - 1]![1] + 1)
      })
    )
  })

  it("does not delete an entry that became visible inside a published batch's range after the batch was read", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    try {
      const outbox = await Outbox.make(store)
      const insert = store.query("INSERT INTO outbox (seq, topic, payload, qos, created_at) VALUES (?, ?, ?, ?, ?)")
      const at = new Date().toISOString()
      await store.transaction(Effect.all([insert.run(1, "events/e", "1", 1, at), insert.run(3, "events/e", "3", 1, at)], { discard: true }))
      const seqs = async () => (await store.run(store.query("SELECT seq FROM outbox ORDER BY seq").all())).map((r) => Number(r.seq))
      // What the table holds each time the relay reads a batch.
      const seen: Array<ReadonlyArray<number>> = []
      const published: Array<string> = []
      let late = false
      const relay = Relay.make({
        outbox: { ...outbox, pending: async (limit) => (seen.push(await seqs()), outbox.pending(limit)) },
        logger: Log.silent,
        batch: 10,
        retryMs: 1,
        publish: async (_t, payload) => {
          // The lower sequence number commits late, while the batch [1, 3] is being published (as a
          // concurrent transaction can on PostgreSQL).
          if (!late) {
            late = true
            await store.transaction(insert.run(2, "events/e", "2", 1, at))
          }
          published.push(payload)
        }
      })
      relay.poke()
      await relay.idle()
      await relay.close()
      // The batch read was [1, 3]; after it was sent, 2 is still there (not deleted unsent), and
      // the next batch publishes it.
      expect(seen).toEqual([[1, 3], [2], []])
      expect(published).toEqual(["1", "3", "2"])
      expect(await seqs()).toEqual([])
      expect(await outbox.size()).toBe(0)
    } finally {
      await store.close()
    }
  })

  it("logs a publish failure that keeps recurring once per streak (and per change of reason), and once when it publishes again", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    let relay: Relay.Relay | undefined
    try {
      const outbox = await Outbox.make(store)
      await store.transaction(outbox.add("events/e", "1"))
      const logger = Log.memory()
      /** The reason each publish fails with (the broker refusing it), undefined: it goes out. */
      let refusal: string | undefined = "not authorized"
      let calls = 0
      relay = Relay.make({
        outbox,
        logger,
        retryMs: 1,
        publish: async () => {
          calls++
          if (refusal !== undefined) throw new Error(refusal)
        }
      })
      const lines = (event: string) => logger.lines.filter((l) => l.includes(event))
      const publishes = async (n: number) => {
        const until = calls + n
        while (calls < until) await new Promise((r) => setTimeout(r, 1))
      }
      relay.poke()
      await publishes(20)
      expect(lines("outbox relay failed")).toEqual([expect.stringContaining("not authorized")])
      refusal = "quota exceeded"
      await publishes(20)
      expect(lines("outbox relay failed")).toEqual([expect.stringContaining("not authorized"), expect.stringContaining("quota exceeded")])
      expect(lines("outbox relay publishes again")).toEqual([])
      refusal = undefined
      await publishes(1)
      await relay.idle()
      await store.transaction(outbox.add("events/e", "2"))
      relay.poke()
      await relay.idle()
      expect(await outbox.size()).toBe(0)
      expect(lines("outbox relay failed")).toHaveLength(2)
      expect(lines("outbox relay publishes again")).toHaveLength(1)
    } finally {
      await relay?.close()
      await store.close()
    }
  })

  /** Rows in the outbox table, read past the outbox (whose `size` deletes what was sent first). */
  const rows = (store: Store) => store.run(store.query("SELECT COUNT(*) AS n FROM outbox").get()).then((r) => Number(r?.n ?? 0))

  it("idle: resolves with what it sent from an offer deleted (SQLite defers that delete by a few ms)", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const outbox = await Outbox.make(store)
    const relay = Relay.make({ outbox, logger: Log.silent, publish: async () => {} })
    try {
      // The first entries read back (the relay's position unknown), the next ones offered after their commit.
      await store.transaction(outbox.add("events/e", "0"))
      relay.poke()
      await relay.idle()
      for (let i = 1; i <= 5; i++) relay.offer([(await store.transaction(outbox.added("events/e", String(i))))()])
      await relay.idle()
      expect(await rows(store)).toBe(0)
    } finally {
      await relay.close()
      await store.close()
    }
  })

  it("idle: waits for the retry of a failed drain, and resolves with the outbox empty", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const outbox = await Outbox.make(store)
    let calls = 0
    const published: Array<string> = []
    const relay = Relay.make({
      outbox,
      logger: Log.silent,
      retryMs: 30,
      publish: async (_t, payload) => {
        if (calls++ === 0) throw new Error("broker away")
        published.push(String(payload))
      }
    })
    try {
      await store.transaction(Effect.forEach(["1", "2"], (p) => outbox.add("events/e", p), { discard: true }))
      relay.poke()
      expect(relay.busy(), "a drain running").toBe(true)
      await new Promise((r) => setTimeout(r, 5))
      expect({ busy: relay.busy(), published }, "a retry due after the failed drain").toEqual({ busy: true, published: [] })
      await relay.idle()
      expect(relay.busy()).toBe(false)
      expect(published).toEqual(["1", "2"])
      expect(await rows(store)).toBe(0)
    } finally {
      await relay.close()
      await store.close()
    }
  })

  it("stopping: a retry due is cancelled (not run, not waited for by idle or close), logged once as not flushed", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const outbox = await Outbox.make(store)
    const logger = Log.memory()
    let calls = 0
    const relay = Relay.make({
      outbox,
      logger,
      retryMs: 100,
      publish: async () => {
        calls++
        throw new Error("broker away")
      }
    })
    try {
      await store.transaction(outbox.add("events/e", "1"))
      relay.poke()
      while (calls === 0) await new Promise((r) => setTimeout(r, 1))
      await new Promise((r) => setTimeout(r, 5))
      const waiting = relay.idle()
      relay.stopping()
      await waiting
      const started = performance.now()
      await relay.close()
      expect(performance.now() - started, "close sat through no back-off").toBeLessThan(50)
      await new Promise((r) => setTimeout(r, 250))
      expect(calls, "no retry after stopping").toBe(1)
      expect(await rows(store), "what failed stays in the outbox").toBe(1)
      expect(logger.lines.filter((l) => l.includes("outbox not flushed"))).toEqual([expect.stringContaining("broker away")])
    } finally {
      await relay.close()
      await store.close()
    }
  })
})

describe("Relay: a retry due after a drain that later succeeded", () => {
  it("stopping: no 'outbox not flushed' when a later drain published everything, and idle does not sit through the retry", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const outbox = await Outbox.make(store)
    const logger = Log.memory()
    let calls = 0
    const published: Array<string> = []
    const relay = Relay.make({
      outbox,
      logger,
      retryMs: 60_000,
      publish: async (_t, payload) => {
        if (calls++ === 0) throw new Error("broker away")
        published.push(String(payload))
      }
    })
    try {
      await store.transaction(outbox.add("events/e", "1"))
      relay.poke()
      while (calls === 0) await new Promise((r) => setTimeout(r, 1))
      await new Promise((r) => setTimeout(r, 5))
      // The broker is back: the next event's poke publishes what failed too.
      await store.transaction(outbox.add("events/e", "2"))
      relay.poke()
      const started = performance.now()
      await Promise.race([relay.idle(), new Promise((r) => setTimeout(r, 1000))])
      expect(performance.now() - started, "idle did not wait for a retry with nothing left to retry").toBeLessThan(500)
      expect(published).toEqual(["1", "2"])
      expect(await outbox.size(), "everything published").toBe(0)
      relay.stopping()
      await relay.close()
      expect(logger.lines.filter((l) => l.includes("outbox not flushed")), "nothing was left unflushed").toEqual([])
    } finally {
      await relay.close()
      await store.close()
    }
  })
})
