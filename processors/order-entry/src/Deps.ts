import type { Context } from "@baton/sdk"
import type { Mailer } from "./Mailer.ts"

/** What the processors are made of: the app's context (its SQL, dialect and clock) and the mailer. */
export interface Deps extends Context {
  readonly mailer: Mailer
}
