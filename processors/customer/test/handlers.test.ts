import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Envelope as E, type Processor } from "@baton/core"
import { Sqlite } from "@baton/store"
import { makeApp, names } from "@baton/customer"

describe("customer over SQLite", () => {
  it("registers once, updates, unsubscribes, rejects the unknown, mails exactly once", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    let mails = 0
    const mailer = { transport: "store" as const, send: async () => ({ messageId: `m-${++mails}`, message: undefined }) }
    const app = await makeApp({ mailer }).make({ ...store, env: {}, clock: E.systemClock })
    const [profiles, mail] = app.processors as [Processor, Processor]
    const run = async (p: Processor, event: ReturnType<typeof E.initiate>) =>
      store.transaction(p.handle(event, p.prepare === undefined ? undefined : await Effect.runPromise(p.prepare(event))))
    const register = E.initiate(names.registerCustomer, { customerId: "c1", name: "Ann", email: "ann@example.com" })
    const registered = await run(profiles, register)
    expect(registered).toEqual([{ type: names.customerRegistered, data: { customerId: "c1", name: "Ann", email: "ann@example.com" } }])
    expect(await run(profiles, E.initiate(names.registerCustomer, { customerId: "c1", name: "Ann", email: "ann@example.com" }))).toEqual(registered)
    await expect(run(profiles, E.initiate(names.registerCustomer, { customerId: "c1", name: "Bob", email: "ann@example.com" }))).rejects.toMatchObject({ name: "Rejected" })
    expect(await run(profiles, E.initiate(names.updateProfile, { customerId: "c1", email: "ann@example.org" }))).toEqual([
      { type: names.profileUpdated, data: { customerId: "c1", name: "Ann", email: "ann@example.org", changed: ["email"] } }
    ])
    await expect(run(profiles, E.initiate(names.updateProfile, { customerId: "c2", name: "X" }))).rejects.toMatchObject({ message: "unknown customer c2" })
    expect(await run(profiles, E.initiate(names.unsubscribe, { customerId: "c1" }))).toEqual([{ type: names.customerUnsubscribed, data: { customerId: "c1" } }])
    await expect(run(profiles, E.initiate(names.unsubscribe, { customerId: "c2" }))).rejects.toMatchObject({ message: "unknown customer c2" })
    const rows = await store.run(store.query("SELECT name, email, newsletter FROM customers").all())
    expect(rows.map((r) => ({ ...r, newsletter: Number(r.newsletter) }))).toEqual([{ name: "Ann", email: "ann@example.org", newsletter: 0 }])

    const welcome = E.next(register, registered[0]!)
    const sent = await run(mail, welcome)
    expect(sent).toEqual([{ type: names.emailSent, data: { customerId: "c1", to: "ann@example.com", template: "welcome", messageId: "m-1" } }])
    expect(await run(mail, welcome)).toEqual(sent)
    expect(mails).toBe(1)
    await store.close()
  })
})
