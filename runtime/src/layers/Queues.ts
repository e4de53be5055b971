/** The store's queues and records the parts share: the inbox, the outbox, rejections, operations. */
import { Inbox, Operations, Outbox, Rejections } from "@baton/store"
import { Context, Effect, Layer } from "effect"
import { Ownership } from "./Ownership.ts"
import { promise } from "./Settings.ts"
import { Store } from "./Store.ts"

export interface Shape {
  readonly rejections: Rejections.Log
  readonly operations: Operations.Log
  readonly outbox: Outbox.Outbox
  readonly inbox: Inbox.Inbox
}

export class Queues extends Context.Service<Queues, Shape>()("baton/runtime/Queues") {}

export const layer = Layer.effect(
  Queues,
  Effect.gen(function* () {
    const store = yield* Store
    const ownership = yield* Ownership
    const rejections = yield* promise(() => Rejections.make(store))
    const operations = yield* promise(() => Operations.make(store))
    const outbox = yield* promise(() => Outbox.make(store, ownership.entries))
    const inbox = yield* promise(() => Inbox.make(store, ownership.inbox))
    return { rejections, operations, outbox, inbox }
  })
)
