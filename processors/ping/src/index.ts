/**
 * The smallest app: `initiate/ping` → one processor → `events/pong`, and a reply when the ping
 * carries `replyTo`. One hop through the whole runtime (ingress, inbox, supervised actor, outbox,
 * broker), for diagnostics and for the benchmarks' one-hop and request-reply scenarios.
 */
import { Envelope as E, type App } from "@baton/core"
import { Effect, Schema } from "effect"

export const Ping = Schema.Struct({ n: Schema.optionalKey(Schema.Finite), sentAt: Schema.optionalKey(Schema.Finite) })

export const make = (): App => ({
  name: "ping",
  initiating: [{ name: "ping", decode: E.decode(Ping) }],
  processors: [
    {
      name: "ping",
      consumes: ["ping"],
      handle: (event) => Effect.succeed([{ type: "pong", data: event.data }]),
      reply: (event) => event.data
    }
  ]
})
