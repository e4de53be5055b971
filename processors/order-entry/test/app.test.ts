import { afterEach, describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Envelope as E, type Envelope, type Processor } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import * as Smtp from "@baton/testkit/smtp"
import orderEntry from "@baton/order-entry/app"

/** Runs a processor the way the runtime does: `prepare` outside, `handle` in one transaction. */
const run = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  return store.transaction(p.handle(event, prepared))
}

/** A clock that reads the same time and counts its ids. */
const fixedClock = (at: string): Envelope.Clock => {
  let n = 0
  return { now: () => new Date(at), newId: () => `id${String(++n).padStart(8, "0")}` }
}

const order = { customerId: "c-7", email: "zoe@example.com", items: [{ sku: "BOOK-3", qty: 2, price: 7 }], payment: { card: "4242424242424242" } }

describe("the order-entry app module (the default export, as the runtime loads it)", () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  it("mails through the SMTP server at BATON_SMTP_URL of its context, and dates and numbers with the context's clock", async () => {
    const mail = await Smtp.start()
    cleanups.push(mail.close)
    const store = await Sqlite.open({ path: ":memory:" })
    cleanups.push(store.close)

    const app = await orderEntry.make({ ...store, env: { BATON_SMTP_URL: mail.url }, clock: fixedClock("2030-01-02T03:04:05.000Z") })
    const p = Object.fromEntries(app.processors.map((x) => [x.name, x])) as Record<string, Processor<unknown>>
    const place = E.initiate("place-order", order)
    const [created] = await run(store, p["order-placement"]!, place)
    expect(created).toMatchObject({ type: "order-created", data: { customerId: "c-7", total: 14, paymentToken: "tok_id00000001", cardLast4: "4242" } })
    const sent = await run(store, p["notification"]!, E.next(place, created!))
    expect(sent).toMatchObject([{ type: "email-sent", data: { to: "zoe@example.com", template: "order-confirmation" } }])
    expect(mail.received.map((m) => m.to)).toEqual([["zoe@example.com"]])
    expect(mail.received[0]!.body).toContain("Thank you for your order")
    // The message left the process: the record keeps no rendered copy; its time is the context's.
    expect(await store.run(store.query("SELECT message, at FROM emails").all())).toEqual([{ message: null, at: "2030-01-02T03:04:05.000Z" }])
  })

  it("hands a handler only data its event's schema reads: anything else is rejected with every issue's path", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    cleanups.push(store.close)
    const app = await orderEntry.make({ ...store, env: {}, clock: E.systemClock })
    const inventory = app.processors.find((x) => x.name === "inventory")!
    const bad = E.initiate("order-created", { orderId: "ORD-1", customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: "2", price: 1 }], total: 1, paymentToken: "t" })
    await expect(run(store, inventory, bad)).rejects.toMatchObject({ name: "Rejected", message: expect.stringMatching(/^'order-created' data does not match its schema: .*items\[0\]\.qty.*cardLast4/) })
    // Nothing was taken.
    expect(await store.run(store.query("SELECT on_hand FROM stock WHERE sku = 'BOOK-1'").get())).toEqual({ on_hand: 1000 })
  })
})
