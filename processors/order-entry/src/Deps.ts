import type { Envelope } from "@baton/core"
import type { Store } from "@baton/store"
import type { Mailer } from "./Mailer.ts"

export interface Deps {
  readonly store: Store
  readonly mailer: Mailer
  readonly clock: Envelope.Clock
}
