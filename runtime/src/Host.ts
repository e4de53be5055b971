/**
 * Hosts one processor: its own broker session, a supervised actor that runs its handler, and the
 * error path for what it cannot process. A message is acknowledged to the broker only after the
 * handler finished and the events it announced were confirmed by the broker.
 */
import { Result } from "effect"
import { Envelope, Log, Topics, type Broker, type Message, type Processor } from "@baton/core"
import type { Supervisor } from "@baton/actors"
import type { ErrorPath } from "./ErrorPath.ts"

/** Topic of a consumed type: initiating events arrive validated on `accepted/`, the rest on `events/`. */
export const topicOf = (initiating: ReadonlySet<string>) => (type: string): string =>
  initiating.has(type) ? Topics.accepted(type) : Topics.event(type)

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export const handler =
  (deps: {
    readonly processor: Processor
    readonly actor: Supervisor.Supervised
    readonly broker: Broker
    readonly reject: ErrorPath
    readonly logger: Log.Logger
    readonly clock?: Envelope.Clock
  }) =>
  async (message: Message): Promise<void> => {
    const { processor, broker } = deps
    let json: unknown
    try {
      json = JSON.parse(message.payload.toString("utf8"))
    } catch (error) {
      return deps.reject({ topic: message.topic, payload: message.payload, kind: "malformed-json", reason: `not an envelope: ${reasonOf(error)}`, processor: processor.name })
    }
    const decoded = Envelope.decodeEnvelope(json)
    if (Result.isFailure(decoded))
      return deps.reject({ topic: message.topic, payload: message.payload, kind: "schema-violation", reason: "invalid envelope", issues: decoded.failure, processor: processor.name })
    const event = decoded.success
    const outcome = await deps.actor.submit(async () => {
      const announced = await processor.handle(event)
      for (const next of announced) {
        const out = Envelope.next(event, next, deps.clock)
        await broker.publish(Topics.event(out.type), Envelope.encode(out), 1)
      }
    })
    if (outcome._tag === "Failed")
      await deps.reject({
        topic: Topics.publicTopic(message.topic),
        payload: message.payload,
        kind: "processing-failed",
        reason: `${processor.name} failed after ${outcome.attempts} attempt(s): ${reasonOf(outcome.error)}`,
        processor: processor.name,
        attempts: outcome.attempts,
        cause: event
      })
  }
