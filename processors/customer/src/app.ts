/**
 * The customer app (docs/concepts.md, section 2: the customer mediator), on the public API only:
 * registration and profile updates, each a two-step workflow (store, then e-mail), and
 * unsubscribing, a simple event that the simple mediator handles in one step. In the broker
 * topology the same processors chain by events: `customer-registered` and `profile-updated`
 * trigger the e-mail. It mails through the order-entry app's mailer (SMTP at `BATON_SMTP_URL`).
 */
import { Baton, ddl, Effect, forUpdate, Rejected, Schema, WorkflowData, type Context, type Workflow } from "@baton/sdk"
import * as Mailer from "@baton/order-entry/mailer"

export const names = {
  registerCustomer: "register-customer",
  updateProfile: "update-profile",
  unsubscribe: "unsubscribe",
  customerRegistered: "customer-registered",
  profileUpdated: "profile-updated",
  customerUnsubscribed: "customer-unsubscribed",
  emailSent: "email-sent"
} as const

const email = Schema.String.check(Schema.isPattern(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, { message: "must be an e-mail address" }))
const customerId = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9_-]{1,64}$/, { message: "must be 1-64 letters, digits, '-' or '_'" }))

export const RegisterCustomer = Schema.Struct({ customerId, name: Schema.NonEmptyString, email })
export type RegisterCustomer = typeof RegisterCustomer.Type
export const UpdateProfile = Schema.Struct({ customerId, name: Schema.optionalKey(Schema.NonEmptyString), email: Schema.optionalKey(email) })
export type UpdateProfile = typeof UpdateProfile.Type
export const Unsubscribe = Schema.Struct({ customerId })
export type Unsubscribe = typeof Unsubscribe.Type

export const Customer = Schema.Struct({ customerId: Schema.String, name: Schema.String, email: Schema.String })
export type Customer = typeof Customer.Type
/** A profile after its update, with the fields the update changed. */
export const ProfileUpdated = Schema.Struct({ ...Customer.fields, changed: Schema.Array(Schema.Literals(["name", "email"])) })
export const EmailSent = Schema.Struct({ customerId: Schema.String, to: Schema.String, template: Schema.String, messageId: Schema.String })

/** The app's events: the initiating ones (partitioned by customer) and those its processors announce. */
export const events = {
  registerCustomer: Baton.initiating(names.registerCustomer, RegisterCustomer, { key: (c) => c.customerId }),
  updateProfile: Baton.initiating(names.updateProfile, UpdateProfile, { key: (u) => u.customerId }),
  unsubscribe: Baton.initiating(names.unsubscribe, Unsubscribe, { key: (u) => u.customerId }),
  customerRegistered: Baton.event(names.customerRegistered, Customer),
  profileUpdated: Baton.event(names.profileUpdated, ProfileUpdated),
  customerUnsubscribed: Baton.event(names.customerUnsubscribed, Schema.Struct({ customerId: Schema.String })),
  emailSent: Baton.event(names.emailSent, EmailSent)
} as const

export const migrations = [
  {
    name: "customer/001-tables",
    sql: ddl(
      (t) => `
      CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, newsletter ${t.int} NOT NULL DEFAULT 1, created_at TEXT NOT NULL, updated_at TEXT NOT NULL${t.rowid});
      CREATE TABLE customer_emails (cause_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, recipient TEXT NOT NULL, template TEXT NOT NULL, message_id TEXT NOT NULL, message TEXT, at TEXT NOT NULL${t.rowid});
    `
    )
  }
]

/** What the processors are made of: the app's context (its SQL, dialect and clock) and the mailer. */
export interface Deps extends Context {
  readonly mailer: Mailer.Mailer
}

/** Stores customers: registration, profile updates, unsubscribing. */
export const profiles = ({ query, dialect, clock }: Deps) => {
  const get = query("SELECT id, name, email FROM customers WHERE id = ?")
  // The row a profile update rewrites, locked against another instance's update (PostgreSQL).
  const getForUpdate = query(`SELECT id, name, email FROM customers WHERE id = ?${forUpdate(dialect)}`)
  // A registration racing another instance's inserts once; the loser compares with the winner's row.
  const insert = query("INSERT INTO customers (id, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id")
  const update = query("UPDATE customers SET name = ?, email = ?, updated_at = ? WHERE id = ?")
  const unsubscribe = query("UPDATE customers SET newsletter = 0, updated_at = ? WHERE id = ? RETURNING id")
  const customerOf = (row: Record<string, unknown>): Customer => ({ customerId: String(row.id), name: String(row.name), email: String(row.email) })
  return Baton.processor({
    name: "customer-profile",
    on: [events.registerCustomer, events.updateProfile, events.unsubscribe],
    handle: function* (event) {
      const at = clock.now().toISOString()
      switch (event.type) {
        case names.registerCustomer: {
          const c = event.data
          if ((yield* insert.run(c.customerId, c.name, c.email, at, at)) === 0) {
            const row = yield* get.get(c.customerId)
            if (row === undefined || row.name !== c.name || row.email !== c.email) return yield* Effect.fail(new Rejected(`customer ${c.customerId} is already registered`))
          }
          return [events.customerRegistered.make({ customerId: c.customerId, name: c.name, email: c.email })]
        }
        case names.updateProfile: {
          const u = event.data
          const row = yield* getForUpdate.get(u.customerId)
          if (row === undefined) return yield* Effect.fail(new Rejected(`unknown customer ${u.customerId}`))
          const before = customerOf(row)
          const after: Customer = { ...before, ...(u.name === undefined ? {} : { name: u.name }), ...(u.email === undefined ? {} : { email: u.email }) }
          yield* update.run(after.name, after.email, at, u.customerId)
          const changed = (["name", "email"] as const).filter((k) => before[k] !== after[k])
          return [events.profileUpdated.make({ ...after, changed })]
        }
        case names.unsubscribe: {
          const u = event.data
          if ((yield* unsubscribe.run(at, u.customerId)) === 0) return yield* Effect.fail(new Rejected(`unknown customer ${u.customerId}`))
          return [events.customerUnsubscribed.make({ customerId: u.customerId })]
        }
      }
    }
  })
}

type Letter = { readonly template: string; readonly to: string; readonly customerId: string; readonly subject: string; readonly text: string }

export const letter = (event: { readonly type: string; readonly data: Customer }): Letter | undefined => {
  const c = event.data
  switch (event.type) {
    case names.customerRegistered:
      return { template: "welcome", to: c.email, customerId: c.customerId, subject: `Welcome, ${c.name}`, text: `Welcome to Baton Books, ${c.name}. Your customer id is ${c.customerId}.` }
    case names.profileUpdated:
      return { template: "profile-updated", to: c.email, customerId: c.customerId, subject: "Your profile was updated", text: `Hello ${c.name}, your profile was updated.` }
    default:
      return undefined
  }
}

/**
 * E-mails customers: a welcome on registration, a confirmation on a profile update. The mail is
 * sent before the transaction (at least once through SMTP); its record is written in the
 * transaction (exactly once in the store), keyed by the causing event, and announced as `email-sent`.
 */
export const mail = ({ sql, query, mailer, clock }: Deps) => {
  const insert = query(
    "INSERT INTO customer_emails (cause_id, customer_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING customer_id, recipient, template, message_id"
  )
  const existing = query("SELECT customer_id, recipient, template, message_id FROM customer_emails WHERE cause_id = ?")
  /** The `email-sent` data of an event's recorded mail, or undefined before it is sent. */
  const sentOf = (row: Readonly<Record<string, unknown>> | undefined) =>
    row === undefined ? undefined : { customerId: String(row.customer_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) }
  const recorded = (event: { readonly id: string }) => Effect.map(existing.get(event.id), sentOf)
  return Mailer.processor({
    name: "customer-mail",
    on: [events.customerRegistered, events.profileUpdated],
    mailer,
    store: { sql },
    letter,
    record: (event, l, sent) => Effect.map(insert.get(event.id, l.customerId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString()), sentOf),
    recorded,
    sent: events.emailSent
  })
}

export const workflows: ReadonlyArray<Workflow.Workflow> = [
  {
    name: names.registerCustomer,
    domain: "customer",
    steps: [
      { name: "store-customer", commands: [{ name: "store-customer", channel: "customer-profile", type: names.registerCustomer, data: (d) => d.input }] },
      { name: "welcome", commands: [{ name: "email-customer", channel: "customer-mail", type: names.customerRegistered, data: (d) => WorkflowData.need(d, events.customerRegistered) }] }
    ],
    summary: (d) => ({ customerId: d.input.customerId })
  },
  {
    name: names.updateProfile,
    domain: "customer",
    steps: [
      { name: "update-profile", commands: [{ name: "update-profile", channel: "customer-profile", type: names.updateProfile, data: (d) => d.input }] },
      { name: "confirm", commands: [{ name: "email-customer", channel: "customer-mail", type: names.profileUpdated, data: (d) => WorkflowData.need(d, events.profileUpdated) }] }
    ],
    summary: (d) => ({ customerId: d.input.customerId })
  }
]

export const rules: ReadonlyArray<Workflow.Rule> = [
  { type: names.registerCustomer, kind: "hard", workflow: names.registerCustomer },
  { type: names.updateProfile, kind: "hard", workflow: names.updateProfile },
  { type: names.unsubscribe, kind: "simple", command: { channel: "customer-profile", type: names.unsubscribe } }
]

export interface Options {
  /** Instead of SMTP at `BATON_SMTP_URL` (a test's mailer). */
  readonly mailer?: Mailer.Mailer
}

/** The app with its options; the module's default export is the app without any. */
export const makeApp = (options: Options = {}) =>
  Baton.app("customer", (ctx) => {
    const deps: Deps = { ...ctx, mailer: options.mailer ?? Mailer.make({ smtpUrl: ctx.env.BATON_SMTP_URL }) }
    return {
      name: "customer",
      initiating: [events.registerCustomer, events.updateProfile, events.unsubscribe],
      events: [events.customerRegistered, events.profileUpdated, events.customerUnsubscribed, events.emailSent],
      migrations,
      processors: [profiles(deps), mail(deps)],
      mediation: { rules, workflows }
    }
  })

export default makeApp()
