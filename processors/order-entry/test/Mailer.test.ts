import { describe, expect, it } from "vitest"
import fc from "fast-check"
import nodemailer from "nodemailer"
import * as Mailer from "../src/Mailer.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 200)
/** Addresses near the edge of `Mailer.plain`: dots anywhere in the local part, any case, digits, hyphens and `xn--` in the domain. */
const edgy = fc
  .tuple(
    fc.stringMatching(/^[A-Za-z0-9.+_-]{1,8}$/),
    fc.array(fc.oneof(fc.stringMatching(/^[A-Za-z0-9-]{1,6}$/), fc.constantFrom("xn--", "XN--jgeva-dua", "xn--abc", "0x1", "0", "255")), { minLength: 1, maxLength: 4 })
  )
  .map(([local, labels]) => `${local}@${labels.join(".")}`)
const json = nodemailer.createTransport({ jsonTransport: true })
/** What nodemailer's JSON transport renders, its message id replaced by `messageId`. */
const reference = async (mail: Mailer.Mail & { readonly from: string }, messageId: string) => {
  const info = await json.sendMail(mail)
  return String((info as { message?: unknown }).message).replace(JSON.stringify(info.messageId), JSON.stringify(messageId))
}

describe("Mailer without SMTP", () => {
  it("records every mail as nodemailer's JSON transport renders it (property)", async () => {
    const mailer = Mailer.make({ from: "Baton Books <orders@baton.example>" })
    let rendered = 0
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.emailAddress(), edgy, fc.string()), fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme", maxLength: 300 }), async (to, subject, text) => {
        const sent = await mailer.send({ to, subject, text })
        expect(sent.messageId).toMatch(/^<[^<>@]+@baton\.example>$/)
        const expected = await reference({ from: "Baton Books <orders@baton.example>", to, subject, text }, sent.messageId)
        expect(sent.message).toBe(expected)
        if (Mailer.plain(to)) rendered++
      }),
      { numRuns: runs }
    )
    expect(rendered).toBeGreaterThan(runs / 4)
  })

  it("gives every rendering of a cause's mail the cause's message id, as nodemailer renders it with that id (property)", async () => {
    const mailer = Mailer.make({ from: "Baton Books <orders@baton.example>" })
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.emailAddress(), edgy), fc.oneof(fc.uuid(), fc.string({ maxLength: 20 })), fc.string({ maxLength: 40 }), async (to, causeId, text) => {
        const [a, b] = [await mailer.send({ to, subject: "s", text }, causeId), await mailer.send({ to, subject: "s", text }, causeId)]
        const fit = /^[A-Za-z0-9._-]+$/.test(causeId) && Mailer.plain(to)
        // A cause id unfit for a message id, or an address that nodemailer renders: a new id each time, and no claim that it is the cause's.
        expect(a.perCause === true).toBe(fit)
        expect(a.messageId === b.messageId).toBe(fit)
        if (fit) expect(a.messageId).toBe(`<${causeId}@baton.example>`)
        expect(a.message).toBe(await reference({ from: "Baton Books <orders@baton.example>", to, subject: "s", text }, a.messageId))
        expect(b).toEqual(fit ? a : { ...a, messageId: b.messageId, message: a.message!.replace(JSON.stringify(a.messageId), JSON.stringify(b.messageId)) })
      }),
      { numRuns: Math.ceil(runs / 2) }
    )
  })

  it("mailers of different senders, their mails interleaved: each mail's sender and message id its own mailer's, as nodemailer renders them (property)", async () => {
    // The sender's address is parsed once and kept for the mails after it (the last sender asked).
    // (Senders that nodemailer records as written: a plain address, its domain in lower case.)
    const at = fc.oneof(fc.emailAddress(), edgy).filter((a) => Mailer.plain(a) && a === a.toLowerCase())
    const senders = fc.oneof(at, fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z ]{0,8}$/), at).map(([name, a]) => `${name.trim() || "X"} <${a}>`))
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(senders, { minLength: 2, maxLength: 4 }), fc.array(fc.tuple(fc.nat(), fc.oneof(fc.uuid(), fc.constant("c-1"))), { minLength: 1, maxLength: 8 }), async (froms, sends) => {
        const mailers = froms.map((from) => Mailer.make({ from }))
        for (const [n, causeId] of sends) {
          const from = froms[n % froms.length]!
          const sent = await mailers[n % froms.length]!.send({ to: "zoe@example.com", subject: "s", text: "t" }, causeId)
          expect(sent.message).toBe(await reference({ from, to: "zoe@example.com", subject: "s", text: "t" }, sent.messageId))
          expect(sent.messageId).toBe(`<${causeId}@${from.replace(/^.*<|>$/g, "").split("@")[1]}>`)
        }
      }),
      { numRuns: Math.ceil(runs / 4) }
    )
  })

  it("renders a named sender and a plain recipient field by field", () => {
    const sent = Mailer.render({ from: "Baton Books <orders@baton.example>", to: "zoe@example.com", subject: "Order ORD-1 received", text: "Thanks" }, "<id@baton.example>")
    expect(JSON.parse(sent.message!)).toEqual({
      from: { address: "orders@baton.example", name: "Baton Books" },
      to: [{ address: "zoe@example.com", name: "" }],
      subject: "Order ORD-1 received",
      text: "Thanks",
      headers: {},
      messageId: "<id@baton.example>"
    })
  })
})
