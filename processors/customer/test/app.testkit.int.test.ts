/** The customer app through the public testkit, as a user's test would be. BATON_PROPERTY_RUNS raises the runs. */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc, type App } from "@baton/sdk/testkit"
import app, { events } from "../src/app.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 8)

describe("customer, on the real runtime (Testkit.start)", () => {
  let kit: App
  beforeAll(async () => {
    // No SMTP: the mail is rendered and kept in the store.
    kit = await Testkit.start(app, { env: { BATON_SMTP_URL: "" } })
  })
  afterAll(async () => {
    await kit?.stop()
  })

  it("for any registration and update: the profile event carries the new fields and what changed, the row and the mails follow", async () => {
    let n = 0
    await fc.assert(
      fc.asyncProperty(Testkit.arbitrary(events.registerCustomer.schema), Testkit.arbitrary(events.updateProfile.schema), async (c, u) => {
        // A fresh id each run: the generated ids repeat, a registration is once per customer.
        const customerId = `c${n++}-${c.customerId}`.slice(0, 64)
        const registered = await kit.flow(await kit.publish(events.registerCustomer, { ...c, customerId }))
        expect(registered.rejections).toEqual([])
        expect(registered.data(events.customerRegistered)).toEqual([{ customerId, name: c.name, email: c.email }])
        expect(registered.data(events.emailSent)).toEqual([expect.objectContaining({ customerId, to: c.email, template: "welcome" })])

        const update = { ...u, customerId }
        const updated = await kit.flow(await kit.publish(events.updateProfile, update))
        expect(updated.rejections).toEqual([])
        const after = { customerId, name: u.name ?? c.name, email: u.email ?? c.email }
        const changed = (["name", "email"] as const).filter((k) => after[k] !== c[k])
        expect(updated.data(events.profileUpdated)).toEqual([{ ...after, changed }])
        expect(updated.data(events.emailSent)).toEqual([expect.objectContaining({ customerId, to: after.email, template: "profile-updated" })])
        expect(await kit.query("SELECT name, email FROM customers WHERE id = ?", customerId)).toEqual([{ name: after.name, email: after.email }])
        expect(await kit.query("SELECT template FROM customer_emails WHERE customer_id = ? ORDER BY at", customerId)).toEqual([{ template: "welcome" }, { template: "profile-updated" }])
      }),
      { numRuns }
    )
  })

  it("a registration with an invalid e-mail is refused at the door, with the field's path, and stores nothing", async () => {
    const sent = await kit.publish(events.registerCustomer, { customerId: "bad-mail", name: "Ann", email: "ann at example" }, { unchecked: true })
    const flow = await kit.flow(sent)
    expect(flow.has(events.customerRegistered)).toBe(false)
    expect(flow.rejections).toEqual([expect.objectContaining({ reason: expect.stringMatching(/email: must be an e-mail address/) })])
    expect(await kit.query("SELECT id FROM customers WHERE id = ?", "bad-mail")).toEqual([])
  })

  it("an update of an unknown customer is rejected by its processor, with the reason", async () => {
    const flow = await kit.flow(await kit.publish(events.updateProfile, { customerId: "nobody", name: "X" }))
    expect(flow.has(events.profileUpdated)).toBe(false)
    expect(flow.rejections.map((r) => [r.processor, r.reason])).toEqual([["customer-profile", expect.stringContaining("unknown customer nobody")]])
  })
})
