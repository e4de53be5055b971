/**
 * The customer app (docs/concepts.md, section 2: the customer mediator): registration and profile
 * updates, each a two-step workflow (store, then e-mail), and unsubscribing, a simple event that
 * the simple mediator handles in one step. In the broker topology the same processors chain by
 * events: `customer-registered` and `profile-updated` trigger the e-mail.
 */
import { Envelope as E, Rejected, Workflow, type App, type Envelope, type Processor } from "@baton/core"
import { Mailer } from "@baton/order-entry"
import { ddl, Postgres, type Store } from "@baton/store"
import { Effect, Schema } from "effect"

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

export interface Customer {
  readonly customerId: string
  readonly name: string
  readonly email: string
}

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

interface Deps {
  readonly store: Store
  readonly mailer: Mailer.Mailer
  readonly clock: Envelope.Clock
}

/** Stores customers: registration, profile updates, unsubscribing. */
export const profiles = ({ store, clock }: Deps): Processor => {
  const get = store.query("SELECT id, name, email FROM customers WHERE id = ?")
  // The row a profile update rewrites, locked against another instance's update (PostgreSQL).
  const getForUpdate = store.query(`SELECT id, name, email FROM customers WHERE id = ?${Postgres.forUpdate(store.dialect)}`)
  // A registration racing another instance's inserts once; the loser compares with the winner's row.
  const insert = store.query("INSERT INTO customers (id, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id")
  const update = store.query("UPDATE customers SET name = ?, email = ?, updated_at = ? WHERE id = ?")
  const unsubscribe = store.query("UPDATE customers SET newsletter = 0, updated_at = ? WHERE id = ? RETURNING id")
  const customerOf = (row: Record<string, unknown>): Customer => ({ customerId: String(row.id), name: String(row.name), email: String(row.email) })
  return {
    name: "customer-profile",
    consumes: [names.registerCustomer, names.updateProfile, names.unsubscribe],
    handle: (event) =>
      Effect.gen(function* () {
        const at = clock.now().toISOString()
        switch (event.type) {
          case names.registerCustomer: {
            const c = event.data as RegisterCustomer
            if ((yield* insert.run(c.customerId, c.name, c.email, at, at)) === 0) {
              const row = yield* get.get(c.customerId)
              if (row === undefined || row.name !== c.name || row.email !== c.email) return yield* Effect.fail(new Rejected(`customer ${c.customerId} is already registered`))
            }
            return [{ type: names.customerRegistered, data: { customerId: c.customerId, name: c.name, email: c.email } satisfies Customer }]
          }
          case names.updateProfile: {
            const u = event.data as UpdateProfile
            const row = yield* getForUpdate.get(u.customerId)
            if (row === undefined) return yield* Effect.fail(new Rejected(`unknown customer ${u.customerId}`))
            const before = customerOf(row)
            const after: Customer = { ...before, ...(u.name === undefined ? {} : { name: u.name }), ...(u.email === undefined ? {} : { email: u.email }) }
            yield* update.run(after.name, after.email, at, u.customerId)
            const changed = (["name", "email"] as const).filter((k) => before[k] !== after[k])
            return [{ type: names.profileUpdated, data: { ...after, changed } }]
          }
          case names.unsubscribe: {
            const u = event.data as Unsubscribe
            if ((yield* unsubscribe.run(at, u.customerId)) === 0) return yield* Effect.fail(new Rejected(`unknown customer ${u.customerId}`))
            return [{ type: names.customerUnsubscribed, data: { customerId: u.customerId } }]
          }
          default:
            return yield* Effect.fail(new Rejected(`customer-profile does not handle ${event.type}`))
        }
      })
  }
}

type Letter = { readonly template: string; readonly to: string; readonly customerId: string; readonly subject: string; readonly text: string }

export const letter = (event: Pick<Envelope.Envelope, "type" | "data">): Letter | undefined => {
  const c = event.data as Customer
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
export const mail = ({ store, mailer, clock }: Deps): Processor<{ readonly letter: Letter; readonly sent: Mailer.Sent } | undefined> => {
  const insert = store.query(
    "INSERT INTO customer_emails (cause_id, customer_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
  )
  const existing = store.query("SELECT customer_id, recipient, template, message_id FROM customer_emails WHERE cause_id = ?")
  /** The `email-sent` data of an event's recorded mail, or undefined before it is sent. */
  const recorded = (event: Envelope.Envelope) =>
    Effect.map(existing.get(event.id), (row) =>
      row === undefined ? undefined : { customerId: String(row.customer_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) }
    )
  return Mailer.processor({
    name: "customer-mail",
    consumes: [names.customerRegistered, names.profileUpdated],
    mailer,
    store,
    letter,
    record: (event, l, sent) => insert.run(event.id, l.customerId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString()),
    recorded
  })
}

export const workflows: ReadonlyArray<Workflow.Workflow> = [
  {
    name: names.registerCustomer,
    domain: "customer",
    steps: [
      { name: "store-customer", commands: [{ name: "store-customer", channel: "customer-profile", type: names.registerCustomer, data: (d) => d.input }] },
      { name: "welcome", commands: [{ name: "email-customer", channel: "customer-mail", type: names.customerRegistered, data: (d) => Workflow.need(d, names.customerRegistered) }] }
    ],
    summary: (d) => ({ customerId: d.input.customerId })
  },
  {
    name: names.updateProfile,
    domain: "customer",
    steps: [
      { name: "update-profile", commands: [{ name: "update-profile", channel: "customer-profile", type: names.updateProfile, data: (d) => d.input }] },
      { name: "confirm", commands: [{ name: "email-customer", channel: "customer-mail", type: names.profileUpdated, data: (d) => Workflow.need(d, names.profileUpdated) }] }
    ],
    summary: (d) => ({ customerId: d.input.customerId })
  }
]

export const rules: ReadonlyArray<Workflow.Rule> = [
  { type: names.registerCustomer, kind: "hard", workflow: names.registerCustomer },
  { type: names.updateProfile, kind: "hard", workflow: names.updateProfile },
  { type: names.unsubscribe, kind: "simple", command: { channel: "customer-profile", type: names.unsubscribe } }
]

export const make = async (deps: { readonly store: Store; readonly mailer: Mailer.Mailer; readonly clock?: Envelope.Clock }): Promise<App> => {
  await deps.store.migrate(migrations)
  const full = { ...deps, clock: deps.clock ?? E.systemClock }
  return {
    name: "customer",
    initiating: [
      { name: names.registerCustomer, decode: E.decode(RegisterCustomer), key: (d) => (d as RegisterCustomer).customerId },
      { name: names.updateProfile, decode: E.decode(UpdateProfile), key: (d) => (d as UpdateProfile).customerId },
      { name: names.unsubscribe, decode: E.decode(Unsubscribe), key: (d) => (d as Unsubscribe).customerId }
    ],
    processors: [profiles(full), mail(full)],
    mediation: { rules, workflows }
  }
}
