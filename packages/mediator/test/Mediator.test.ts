import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Log, Rejected, Topics, type Envelope, type Processor } from "@baton/core"
import { Postgres, Sqlite, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import { OrderWorkflow } from "@baton/order-entry"
import { Mediator, WorkflowStore } from "@baton/mediator"

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

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

const envelope = (id: string, type: string, key: string, data: unknown, replyTo?: string): Envelope.Envelope => ({
  id,
  type,
  key,
  correlationId: key,
  causationId: id,
  occurredAt: new Date(0).toISOString(),
  ...(replyTo === undefined ? {} : { replyTo }),
  data
})

/** What the runtime does with a processor: prepare outside, handle inside the message's transaction. */
const run = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  const out = await store.transaction(p.handle(event, prepared))
  await p.committed?.(event, prepared)
  return out
}

const order = { orderId: "ORD-1", customerId: "c1", email: "c1@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, payment: { card: "4242424242424242" } }
/** Its `order-created`, as order placement announces it (the workflow reads results with their schemas). */
const created = { ...order, paymentToken: "tok_1", cardLast4: "4242" }

for (const kind of ["sqlite", "pg"] as const)
  describe(`on ${kind}`, () => {
    beforeEach(() => {
      engine = kind
    })

    it("the workflow store saves and removes inside the caller's transaction, and reads outside", async () => {
      const store = await open()
      const workflows = await WorkflowStore.inStore(store)
      const saved = (id: string, status: string, updatedAt: string, version = 1): WorkflowStore.Saved => ({
        id,
        workflow: "w",
        domain: "d",
        status,
        track: "main",
        step: 0,
        data: { input: {}, results: {} },
        commands: {},
        startedAt: updatedAt,
        updatedAt,
        lastInput: "x",
        lastEffects: [],
        version
      })
      await store.transaction(Effect.andThen(workflows.save(saved("a", "running", "2026-01-01")), workflows.save(saved("b", "failed", "2026-01-02"))))
      expect(await store.transaction(workflows.save(saved("a", "running", "2026-01-03", 2)))).toBe(true)
      expect((await workflows.load("a"))?.updatedAt).toBe("2026-01-03")
      // A write from a stale copy (computed from a version that is no longer the stored one) writes nothing.
      expect(await store.transaction(workflows.save(saved("a", "running", "2026-01-09", 2)))).toBe(false)
      expect(await store.transaction(workflows.save(saved("a", "running", "2026-01-09", 1)))).toBe(false)
      expect(await store.transaction(workflows.remove(saved("a", "completed", "2026-01-09", 2)))).toBe(false)
      expect(await workflows.load("a")).toMatchObject({ updatedAt: "2026-01-03", version: 2 })
      expect(await workflows.load("nope")).toBeUndefined()
      expect((await workflows.list({})).map((s) => s.id)).toEqual(["b", "a"])
      expect((await workflows.list({ status: "failed", domain: "d" })).map((s) => s.id)).toEqual(["b"])
      expect(await workflows.list({ domain: "other" })).toEqual([])
      // A failed transaction keeps nothing of it.
      await expect(store.transaction(Effect.andThen(workflows.remove(saved("a", "completed", "2026-01-05", 3)), Effect.fail(new Error("boom"))))).rejects.toThrow("boom")
      expect(await workflows.load("a")).toBeDefined()
      expect(await store.transaction(workflows.remove(saved("a", "completed", "2026-01-05", 3)))).toBe(true)
      expect(await workflows.load("a")).toBeUndefined()
      // The effects a state was reached with went out with it: not stored, and a loaded state has none.
      await store.transaction(workflows.save({ ...saved("c", "running", "2026-01-04"), lastEffects: [{ _tag: "Announce", type: "workflow-started", data: { workflowId: "c" } }] }))
      expect((await workflows.load("c"))?.lastEffects).toEqual([])
      expect(String((await store.run(store.query("SELECT state FROM workflows WHERE id = ?").get("c")))?.state)).not.toContain("workflow-started")
    })

    it("a domain mediator starts a workflow, saves its state with the input and advances on acknowledgements", async () => {
      const store = await open()
      const workflows = await WorkflowStore.inStore(store)
      const domain = Mediator.domain({ domain: "order", workflows: [OrderWorkflow.workflow], store: workflows, defaults: { timeoutMs: 60_000, maxAttempts: 2 }, logger: Log.silent })
      cleanups.push(() => domain.close())
      expect(domain.processor.actors).toBe(16)
      const start = envelope("s1", Mediator.messages.start, "wf-1", { workflow: OrderWorkflow.workflow.name, input: order })
      const out = await run(store, domain.processor, start)
      const send = out.find((n) => n.topic === Topics.channel("order-placement"))
      expect(send?.replyTo).toBe(Topics.mediator("order"))
      expect(out.map((n) => n.type)).toContain("workflow-started")
      expect((await workflows.load("wf-1"))?.status).toBe("running")
      // A repeated start changes nothing.
      expect(await run(store, domain.processor, { ...start, id: "s2" })).toEqual([])

      const ack = envelope("a1", Mediator.messages.acked, "wf-1", { commandId: send!.id, results: [{ type: "order-created", data: created }] })
      const next = await run(store, domain.processor, ack)
      expect(next.filter((n) => n.replyTo !== undefined).map((n) => n.topic).sort()).toEqual([Topics.channel("inventory"), Topics.channel("notification"), Topics.channel("payment")])
      expect(Object.keys((await workflows.load("wf-1"))!.commands).length).toBe(4)
      expect(await domain.recover()).toBe(1)
      // An input for a workflow that is not there is dropped.
      expect(await run(store, domain.processor, envelope("a2", Mediator.messages.acked, "wf-9", { commandId: "x", results: [] }))).toEqual([])
      await expect(Effect.runPromise(domain.processor.prepare!(envelope("u1", "unknown", "wf-1", {})))).rejects.toThrow(Rejected)
    })

    it("a channel acknowledges with the wrapped processor's results, or announces them without a reply address", async () => {
      const store = await open()
      const business: Processor = {
        name: "payment",
        consumes: ["order-created"],
        handle: (event) => Effect.succeed([{ type: "payment-applied", data: event.data }])
      }
      const channel = Mediator.channel(business)
      expect(channel.topics).toEqual([Topics.channel("payment")])
      // Inputs of many workflows at once (more of them share each commit), as the domain mediator's.
      expect(channel.actors).toBe(16)
      expect(Mediator.channel({ ...business, actors: 32 }).actors).toBe(32)
      const acked = await run(store, channel, envelope("c1", "order-created", "wf-1", { n: 1 }, Topics.mediator("order")))
      expect(acked).toEqual([{ type: Mediator.messages.acked, topic: Topics.mediator("order"), key: "wf-1", data: { commandId: "c1", results: [{ type: "payment-applied", data: { n: 1 } }] } }])
      expect(await run(store, channel, envelope("c2", "order-created", "k", { n: 2 }))).toEqual([{ type: "payment-applied", data: { n: 2 } }])
      // An announced event's version is kept in the acknowledgement's results.
      const versioned = Mediator.channel({ ...business, handle: (event) => Effect.succeed([{ type: "payment-applied", version: 2, data: event.data }]) })
      expect((await run(store, versioned, envelope("c4", "order-created", "wf-1", { n: 4 }, Topics.mediator("order"))))[0]?.data).toEqual({
        commandId: "c4",
        results: [{ type: "payment-applied", version: 2, data: { n: 4 } }]
      })
      expect(channel.failed?.(envelope("c3", "order-created", "wf-1", {}, "q"), "no")).toEqual([{ type: Mediator.messages.failed, topic: "q", key: "wf-1", data: { commandId: "c3", reason: "no" } }])
    })

    it("the simple mediator delegates complex events and rejects unknown ones", async () => {
      const store = await open()
      const simple = Mediator.simple(OrderWorkflow.rules, [OrderWorkflow.workflow])
      const out = await run(store, simple, envelope("p1", OrderWorkflow.rules[0]!.type, "k", order))
      expect(out.map((n) => [n.type, n.topic, n.key])).toEqual([[Mediator.messages.start, Topics.mediator("order"), "p1"]])
      await expect(run(store, simple, envelope("p2", "nothing", "k", {}))).rejects.toThrow(Rejected)
      // A simple rule's command says which version of its event the data follows.
      const direct = Mediator.simple([{ type: "sample", kind: "simple", command: { channel: "lab", type: "sample", version: 2 } }], [])
      expect(await run(store, direct, envelope("p3", "sample", "k", { n: 1 }))).toEqual([{ id: "p3/command", type: "sample", topic: Topics.channel("lab"), version: 2, data: { n: 1 } }])
      // One instance alone it takes only the simple rules' events, and still delegates a workflow's event left in its inbox.
      const alone = Mediator.simple([...OrderWorkflow.rules, { type: "sample", kind: "simple", command: { channel: "lab", type: "sample" } }], [OrderWorkflow.workflow], ["sample"])
      expect(alone.consumes).toEqual(["sample"])
      expect((await run(store, alone, envelope("p4", OrderWorkflow.rules[0]!.type, "k", order))).map((n) => [n.type, n.key])).toEqual([[Mediator.messages.start, "p4"]])
    })
  })
