/**
 * Outgoing e-mail through nodemailer. Without SMTP configured the message is rendered as
 * nodemailer's JSON transport renders it and kept in the store (`emails.message`), so the
 * reference app sends nothing.
 */
import { randomUUID } from "node:crypto"
import nodemailer from "nodemailer"
import { Baton, Effect, Schema, Sensitive, SqlClient, type Event, type Processor, type Typed } from "@baton/sdk"

export interface Mail {
  readonly to: string
  readonly subject: string
  readonly text: string
}

export interface Sent {
  readonly messageId: string
  /** The rendered message when nothing left the process (JSON transport). */
  readonly message: string | undefined
  /**
   * The message id is the cause's own (`causeMessageId`): every rendering of the cause's mail has
   * the same id, so a record of it written before is what this one would write.
   */
  readonly perCause?: boolean
}

export interface Mailer {
  readonly transport: "store" | "smtp"
  /** `causeId`: the id of the event the mail is for; without SMTP (to a plain address) the message id is made from it. */
  readonly send: (mail: Mail, causeId?: string) => Promise<Sent>
  /**
   * `send` at once, where it needs nothing asynchronous (without SMTP, to a plain address: only
   * `render`); undefined otherwise. Lets a handler render in its transaction without awaiting (a
   * fiber suspended in the transaction per mail: order flow 0.97x of main awaiting, 1.06x so).
   */
  readonly sendNow?: (mail: Mail, causeId?: string) => Sent | undefined
}

/** The message id of a cause's mail (without SMTP), when its id is fit for one (letters, digits, `.`, `_`, `-`). */
export const causeMessageId = (causeId: string, from: string): string | undefined =>
  /^[A-Za-z0-9._-]{1,200}$/.test(causeId) ? `<${causeId}@${domainOf(from)}>` : undefined

/** `Name <address>` or a bare address, as nodemailer's JSON transport records it. */
const address = (text: string): { readonly address: string; readonly name: string } => {
  const named = /^\s*"?([^"<]*?)"?\s*<([^<>\s]+)>\s*$/.exec(text)
  return named === null ? { address: text.trim(), name: "" } : { address: named[2]!, name: named[1]! }
}

/**
 * `address` of the sender (`from`): the same text for every mail of a mailer, parsed once (the last
 * text asked, with its domain), not twice a mail (~4 us a mail in the order flow's profile).
 */
let fromText: string | undefined
let fromParsed: { readonly address: { readonly address: string; readonly name: string }; readonly domain: string } = { address: { address: "", name: "" }, domain: "" }
const sender = (from: string) => {
  if (from !== fromText) {
    const parsed = address(from)
    fromParsed = { address: parsed, domain: parsed.address.split("@")[1] ?? "localhost" }
    fromText = from
  }
  return fromParsed
}

/** The domain of the sender's address, which message ids end with. */
const domainOf = (from: string): string => sender(from).domain

/**
 * The message nodemailer's JSON transport would render (`jsonTransport: true`), for a mail with
 * single plain addresses: the same JSON with a new message id. That transport builds the whole MIME
 * tree to read back these fields (~130 us a mail here, a tenth of an order's CPU); this takes ~2 us.
 * `Mailer.test.ts` checks it against nodemailer's own rendering.
 */
export const render = (mail: Mail & { readonly from: string }, messageId = `<${randomUUID()}@${domainOf(mail.from)}>`): Sent => ({
  messageId,
  message: JSON.stringify({ from: sender(mail.from).address, to: [plain(mail.to) ? recipient(mail.to) : address(mail.to)], subject: mail.subject, text: mail.text, headers: {}, messageId })
})

/**
 * A plain address that `render` records as nodemailer would: no display name, list or group; a
 * dot-atom local part (nodemailer quotes any other); an ASCII domain whose last label starts with a
 * letter (nodemailer rewrites a numeric one as an IPv4 address) and without an A-label (`xn--`,
 * which it decodes and checks). Such a domain nodemailer only lowercases.
 */
export const plain = (to: string): boolean =>
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?!(?:[^@]*\.)?xn--)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z][A-Za-z0-9-]*$/i.test(to)

/** A plain address as nodemailer records it: its domain in lower case. */
const recipient = (to: string): { readonly address: string; readonly name: string } => {
  const at = to.lastIndexOf("@")
  return { address: to.slice(0, at + 1) + to.slice(at + 1).toLowerCase(), name: "" }
}

export const make = (options: { readonly smtpUrl?: string | undefined; readonly from?: string } = {}): Mailer => {
  const from = options.from ?? "Baton Books <orders@baton.example>"
  const smtp = options.smtpUrl !== undefined && options.smtpUrl !== ""
  const transport = smtp ? nodemailer.createTransport(options.smtpUrl) : nodemailer.createTransport({ jsonTransport: true })
  // No card number leaves in an e-mail, whatever a template or a reason in it echoes.
  const masked = (mail: Mail) => ({ from, to: mail.to, subject: Sensitive.text(mail.subject), text: Sensitive.text(mail.text) })
  const sendNow = (mail: Mail, causeId?: string): Sent | undefined => {
    if (smtp || !plain(mail.to)) return undefined
    // The message id the cause's (the same for every rendering of its mail), where it is fit for one.
    const messageId = causeId === undefined ? undefined : causeMessageId(causeId, from)
    return messageId === undefined ? render(masked(mail)) : { ...render(masked(mail), messageId), perCause: true }
  }
  return {
    transport: smtp ? "smtp" : "store",
    sendNow,
    send: async (mail, causeId) => {
      const now = sendNow(mail, causeId)
      if (now !== undefined) return now
      const info = await transport.sendMail(masked(mail))
      const message = (info as { message?: unknown }).message
      return { messageId: String(info.messageId), message: typeof message === "string" ? message : undefined }
    }
  }
}

/**
 * A processor that e-mails on some events and announces `email-sent`: the mail is sent before the
 * transaction (at least once through SMTP), or, without SMTP and with `renderAgain`, rendered in
 * it; its record is written in the transaction (exactly once in the store), keyed by the causing
 * event.
 */
export const processor = <E extends Event, L extends Mail, D>(options: {
  readonly name: string
  /** The events it mails on. */
  readonly on?: E | ReadonlyArray<E>
  /** Or their types only, read untyped (`data` unknown). */
  readonly consumes?: ReadonlyArray<string>
  /** Explicit topics instead of those of the events (some it takes only as commands). */
  readonly topics?: ReadonlyArray<string>
  readonly mailer: Mailer
  /** Where `prepare` looks for the record of a mail already sent (outside the transaction; none with `renderAgain`). */
  readonly store: { readonly sql: SqlClient.SqlClient }
  /** The letter for an event, or undefined when the event asks for none. */
  readonly letter: (event: Typed<E>) => L | undefined
  /** Records a sent mail: the `email-sent` data of the record it wrote, or undefined when the event's mail was recorded already. */
  readonly record: (event: Typed<E>, letter: L, sent: Sent) => Effect.Effect<D | undefined, unknown, SqlClient.SqlClient>
  /** The `email-sent` data of an event's recorded mail, or undefined before it is sent. */
  readonly recorded: (event: Typed<E>) => Effect.Effect<D | undefined, unknown, SqlClient.SqlClient>
  /** The `email-sent` event its data is announced as (encoded by its schema); as recorded when absent. */
  readonly sent?: Event<"email-sent", D>
  /**
   * Without SMTP (the `store` transport), no read of a mail recorded already before it is
   * rendered: nothing leaves the process, so a mail rendered again for such an event is only
   * dropped (the record's insert inserts nothing and the recorded one is read and announced). One
   * statement and one round trip less per mail; `send` may then run more than once per event. The
   * mail is then rendered in `handle`, and the processor has no `prepare` (see below). Through SMTP
   * the read and the `prepare` stay whatever this says. Default false.
   */
  readonly renderAgain?: boolean
  /**
   * `record` writes only rows keyed by the event (`Processor.ownRows`): several of its messages
   * share a group commit on PostgreSQL. Default false.
   */
  readonly ownRows?: boolean
}): Processor<{ readonly letter: L; readonly sent: Sent } | undefined> => {
  const stored = options.mailer.transport === "store"
  // Without SMTP and with `renderAgain` the mail is only rendered: that is done in the transaction,
  // in `handle`, and the processor has no `prepare`, so that a domain mediator's command to it runs
  // in the mediator's transaction (`Consumer.call`; 3 e-mails an order workflow: no inbox row
  // pending, no acknowledgement queued, no transaction of their own). A transaction that does not
  // commit renders in vain, as a `prepare` run again would.
  const inHandle = options.renderAgain === true && stored
  /** The event's letter and its mail sent (rendered), or undefined when the event asks for none. */
  const mail = (event: Typed<E>): Effect.Effect<{ readonly letter: L; readonly sent: Sent } | undefined, unknown> => {
    const l = options.letter(event)
    if (l === undefined) return Effect.undefined
    const now = options.mailer.sendNow?.(l, event.id)
    return now !== undefined ? Effect.succeed({ letter: l, sent: now }) : Effect.map(Effect.tryPromise(() => options.mailer.send(l, event.id)), (sent) => ({ letter: l, sent }))
  }
  const handle = Effect.fnUntraced(function* (event: Typed<E>, prepared: { readonly letter: L; readonly sent: Sent } | undefined) {
    // The record written here needs no reading back (one statement less); one written before is read.
    const written = prepared === undefined ? undefined : yield* options.record(event, prepared.letter, prepared.sent)
    const data = written ?? (yield* options.recorded(event))
    return data === undefined ? [] : [options.sent === undefined ? { type: "email-sent", data } : options.sent.make(data)]
  })
  return Baton.processor({
    name: options.name,
    // Without `on`, E is the bare `Event` (data of any type): each type read with `Schema.Unknown`.
    on: options.on ?? (options.consumes ?? []).map((type) => Baton.event(type, Schema.Unknown) as E),
    ...(options.topics === undefined ? {} : { topics: options.topics }),
    ...(inHandle
      ? {}
      : {
          prepare: Effect.fnUntraced(function* (event: Typed<E>) {
            if (options.letter(event) === undefined) return undefined
            // Outside the transaction: a read on the store's own client (no transaction to join).
            if ((yield* Effect.provideService(options.recorded(event), SqlClient.SqlClient, options.store.sql)) !== undefined) return undefined
            return yield* mail(event)
          }),
          // Without SMTP nothing leaves the process (the mail is rendered and kept in the store): for a
          // message handled meanwhile it renders in vain, so no read that it is still pending comes first
          // (one statement a message); the transaction's done mark still skips it. Through SMTP the read
          // stays: a message settled without a mail recorded (rejected, parked) must not mail when it is
          // scheduled again.
          prepareReadsOnly: stored
        }),
    ...(options.ownRows === undefined ? {} : { ownRows: options.ownRows }),
    handle: inHandle ? (event) => Effect.flatMap(mail(event), (prepared) => handle(event, prepared)) : handle
  })
}
