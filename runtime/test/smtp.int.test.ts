import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Smtp from "@baton/testkit/smtp"
import { startRuntime, connect, collect, type Harness } from "./support.ts"

describe("Notification through SMTP (BATON_SMTP_URL)", () => {
  let mail: Smtp.Smtp
  let h: Harness

  beforeAll(async () => {
    mail = await Smtp.start()
    // The apps read it from their environment (the runtime's `env` option, else the process's).
    h = await startRuntime({}, { env: { ...process.env, BATON_SMTP_URL: mail.url } })
  })
  afterAll(async () => {
    await h?.stop()
    await mail?.close()
  })

  it("sends the customer's e-mails to the SMTP server", async () => {
    const client = await connect(h.url)
    const events = await collect(client, ["events/email-sent"])
    await client.publishAsync(
      "initiate/place-order",
      JSON.stringify({ customerId: "smtp-1", email: "zoe@example.com", items: [{ sku: "BOOK-5", qty: 1, price: 7 }], payment: { card: "4242424242424242" } }),
      { qos: 1 }
    )
    await events.until((all) => all.length >= 2, 15_000, "two email-sent")
    expect(mail.received.map((m) => m.to)).toEqual([["zoe@example.com"], ["zoe@example.com"]])
    const subjects = mail.received.map((m) => (/^Subject: (.*?)\r?$/m.exec(m.body) ?? [])[1] ?? "")
    expect(subjects.some((s) => /^Order ORD-\d+ received$/.test(s)), subjects.join(" | ")).toBe(true)
    expect(subjects.some((s) => /^Order ORD-\d+ is ready to ship$/.test(s)), subjects.join(" | ")).toBe(true)
    // With SMTP the message left the process: the store keeps the record, not the rendered message.
    const rows = await h.runtime.store.run(h.runtime.store.query("SELECT template, message FROM emails ORDER BY at").all())
    expect(rows.map((r) => r.template).sort()).toEqual(["order-confirmation", "ready-to-ship"])
    expect(rows.every((r) => r.message === null)).toBe(true)
    await client.endAsync()
  })
})
