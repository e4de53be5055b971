/**
 * The smallest app, written with the public API only (`@baton/sdk`), as a user's app would be:
 * `initiate/ping` → one processor → `events/pong`, and a reply when the ping carries `replyTo`.
 */
import { Baton, Effect, Schema } from "@baton/sdk"

export const PingData = Schema.Struct({ n: Schema.optionalKey(Schema.Finite), sentAt: Schema.optionalKey(Schema.Finite) })
export const Ping = Baton.initiating("ping", PingData)
export const Pong = Baton.event("pong", PingData)

export default Baton.app({
  name: "ping",
  initiating: [Ping],
  events: [Pong],
  processors: [
    Baton.processor({
      name: "ping",
      on: Ping,
      handle: (event) => Effect.succeed([Pong.make(event.data)]),
      reply: (event) => event.data
    })
  ]
})
