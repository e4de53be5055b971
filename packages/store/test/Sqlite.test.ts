import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Inbox, IngressLog, Outbox, Sqlite } from "@baton/store"

const fresh = () => {
  const store = Sqlite.open({ path: ":memory:" })
  store.db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY)")
  return store
}

describe("Sqlite.group (group commit)", () => {
  it("commits exactly the items that did not throw, each one whole, for all mixes of items", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ rows: fc.integer({ min: 1, max: 4 }), fails: fc.boolean() }), { maxLength: 30 }), async (items) => {
        const store = fresh()
        const insert = store.db.prepare("INSERT INTO t (k) VALUES (?)")
        let next = 0
        const outcomes = await Promise.allSettled(
          items.map((item) =>
            store.group(() => {
              const keys = Array.from({ length: item.rows }, () => next++)
              for (const k of keys) insert.run(k)
              if (item.fails) throw new Error("boom")
              return keys
            })
          )
        )
        const committed = outcomes.flatMap((o) => (o.status === "fulfilled" ? o.value : []))
        const rows = store.db.prepare("SELECT k FROM t ORDER BY k").all().map((r) => Number(r.k))
        expect(rows).toEqual(committed.sort((a, b) => a - b))
        expect(outcomes.map((o) => o.status === "rejected")).toEqual(items.map((i) => i.fails))
        store.close()
      })
    )
  })

  it("lets a nested transaction join the group's", async () => {
    const store = fresh()
    await store.group(() => store.transaction(() => store.db.prepare("INSERT INTO t (k) VALUES (1)").run()))
    expect(store.db.prepare("SELECT COUNT(*) AS n FROM t").get()?.n).toBe(1)
  })
})

describe("Inbox", () => {
  it("recognises a redelivered envelope id and settles a message once", () => {
    const store = Sqlite.open({ path: ":memory:" })
    const inbox = Inbox.make(store)
    const entry = { envelopeId: "e-1", topic: "events/x", key: "k", payload: "{}" }
    expect(inbox.receive("p", entry)).toBe(true)
    expect(inbox.receive("p", entry)).toBe(false)
    expect(inbox.receive("q", entry)).toBe(true)
    expect(inbox.pending("p").map((e) => e.envelopeId)).toEqual(["e-1"])
    expect(inbox.settle("p", "e-1", "done")).toBe(true)
    expect(inbox.settle("p", "e-1", "failed")).toBe(false)
    expect(inbox.status("p", "e-1")).toBe("done")
    expect(inbox.pending("p")).toEqual([])
  })
})

describe("IngressLog", () => {
  it("commits appends of one tick together, keeps a preview of oversized payloads, and sees an envelope id once", async () => {
    const store = Sqlite.open({ path: ":memory:" })
    const log = IngressLog.make(store, { maxBytes: 10, previewBytes: 4 })
    await Promise.all([log.append("initiate/a", Buffer.from("{}"), "c1"), log.append("initiate/a", Buffer.from("x".repeat(50)), null)])
    const entries = log.unforwarded(10)
    expect(entries.map((e) => [e.topic, e.payload.toString(), e.size, e.clientId])).toEqual([
      ["initiate/a", "{}", 2, "c1"],
      ["initiate/a", "xxxx", 50, null]
    ])
    log.forwarded(entries[0]!.seq)
    expect(log.unforwarded(10)).toHaveLength(1)
    expect(log.firstSight("id-1", 1)).toBe(true)
    expect(log.firstSight("id-1", 2)).toBe(false)
  })

  it("a fence that refuses keeps the batch out; an after-commit step that fails leaves it logged but unacknowledged", async () => {
    const store = Sqlite.open({ path: ":memory:" })
    let holder = false
    let forwarding = "fails"
    const log = IngressLog.make(store, {
      maxBytes: 100,
      previewBytes: 10,
      fence: () => {
        if (!holder) throw new Error("not the holder")
      },
      afterCommit: () => {
        if (forwarding === "fails") throw new Error("forward failed")
      }
    })
    await expect(log.append("initiate/a", Buffer.from("{}"), null)).rejects.toThrow("not the holder")
    expect(log.unforwarded(10)).toEqual([])
    holder = true
    await expect(log.append("initiate/a", Buffer.from("1"), null)).rejects.toThrow("forward failed")
    expect(log.unforwarded(10).map((e) => e.payload.toString())).toEqual(["1"])
    forwarding = "works"
    await log.append("initiate/a", Buffer.from("2"), null)
    expect(log.unforwarded(10).map((e) => e.payload.toString())).toEqual(["1", "2"])
  })
})

describe("Outbox", () => {
  it("returns entries in order and deletes a sent run", () => {
    const store = Sqlite.open({ path: ":memory:" })
    const outbox = Outbox.make(store)
    store.transaction(() => ["a", "b", "c"].forEach((t) => outbox.add(`events/${t}`, t)))
    const first = outbox.pending(2)
    expect(first.map((e) => e.payload)).toEqual(["a", "b"])
    outbox.sent(first[0]!.seq, first[1]!.seq)
    expect(outbox.pending(10).map((e) => e.payload)).toEqual(["c"])
    expect(outbox.size()).toBe(1)
  })
})

describe("retention", () => {
  it("forgets settled inbox entries and forwarded ingress entries older than the window, never pending ones", async () => {
    const store = Sqlite.open({ path: ":memory:" })
    const inbox = Inbox.make(store)
    const log = IngressLog.make(store, { maxBytes: 100, previewBytes: 10 })
    for (const id of ["a", "b", "c"]) inbox.receive("p", { envelopeId: id, topic: "t", key: "k", payload: "{}" })
    inbox.settle("p", "a", "done")
    inbox.settle("p", "b", "failed")
    await Promise.all([log.append("initiate/x", Buffer.from("{}"), null), log.append("initiate/x", Buffer.from("{}"), null)])
    const [first] = log.unforwarded(10)
    log.forwarded(first!.seq)
    log.firstSight("env-1", first!.seq)
    expect(inbox.prune(new Date(Date.now() - 60_000))).toBe(0)
    const later = new Date(Date.now() + 60_000)
    expect(inbox.prune(later)).toBe(2)
    expect(inbox.pending("p").map((e) => e.envelopeId)).toEqual(["c"])
    expect(log.prune(later)).toBe(1)
    expect(log.unforwarded(10)).toHaveLength(1)
    // The id is forgotten with its entry: past the window a resend is new again.
    expect(log.firstSight("env-1", 99)).toBe(true)
  })
})
