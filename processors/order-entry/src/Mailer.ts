/**
 * Outgoing e-mail through nodemailer. Without SMTP configured the message is rendered by the
 * JSON transport and kept in the store (`emails.message`), so the reference app sends nothing.
 */
import nodemailer from "nodemailer"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { Sensitive, type Envelope, type Processor } from "@baton/core"
import type { Sql, Store } from "@baton/store"

export interface Mail {
  readonly to: string
  readonly subject: string
  readonly text: string
}

export interface Sent {
  readonly messageId: string
  /** The rendered message when nothing left the process (JSON transport). */
  readonly message: string | undefined
}

export interface Mailer {
  readonly transport: "store" | "smtp"
  readonly send: (mail: Mail) => Promise<Sent>
}

export const make = (options: { readonly smtpUrl?: string | undefined; readonly from?: string } = {}): Mailer => {
  const from = options.from ?? "Baton Books <orders@baton.example>"
  const smtp = options.smtpUrl !== undefined && options.smtpUrl !== ""
  const transport = smtp ? nodemailer.createTransport(options.smtpUrl) : nodemailer.createTransport({ jsonTransport: true })
  return {
    transport: smtp ? "smtp" : "store",
    send: async (mail) => {
      // No card number leaves in an e-mail, whatever a template or a reason in it echoes.
      const info = await transport.sendMail({ from, to: mail.to, subject: Sensitive.text(mail.subject), text: Sensitive.text(mail.text) })
      const message = (info as { message?: unknown }).message
      return { messageId: String(info.messageId), message: typeof message === "string" ? message : undefined }
    }
  }
}

/**
 * A processor that e-mails on some events and announces `email-sent`: the mail is sent before the
 * transaction (at least once through SMTP); its record is written in the transaction (exactly
 * once in the store), keyed by the causing event.
 */
export const processor = <L extends Mail>(options: {
  readonly name: string
  readonly consumes: ReadonlyArray<string>
  readonly mailer: Mailer
  /** Where `prepare` looks for the record of a mail already sent (outside the transaction). */
  readonly store: Store
  /** The letter for an event, or undefined when the event asks for none. */
  readonly letter: (event: Envelope.Envelope) => L | undefined
  readonly record: (event: Envelope.Envelope, letter: L, sent: Sent) => Sql<unknown>
  /** The `email-sent` data of an event's recorded mail, or undefined before it is sent. */
  readonly recorded: (event: Envelope.Envelope) => Sql<unknown>
}): Processor<{ readonly letter: L; readonly sent: Sent } | undefined> => ({
  name: options.name,
  consumes: options.consumes,
  prepare: (event) =>
    Effect.gen(function* () {
      const l = options.letter(event)
      if (l === undefined) return undefined
      // Outside the transaction: a read on the store's own client (no transaction to join).
      if ((yield* Effect.provideService(options.recorded(event), SqlClient.SqlClient, options.store.sql)) !== undefined) return undefined
      const sent = yield* Effect.tryPromise(() => options.mailer.send(l))
      return { letter: l, sent }
    }),
  handle: (event, prepared) =>
    Effect.gen(function* () {
      if (prepared !== undefined) yield* options.record(event, prepared.letter, prepared.sent)
      const data = yield* options.recorded(event)
      return data === undefined ? [] : [{ type: "email-sent", data }]
    })
})
