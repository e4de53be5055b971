/**
 * The outbox relay (Relay.ts) on the broker, and the tap that keeps what it published lately for
 * the console's flows. The relay has no finalizer of its own: it is flushed and closed when
 * consuming stops (Consuming.ts), before the actors stop.
 */
import { Topics, type Broker as Port } from "@baton/core"
import { Context, Effect, Layer } from "effect"
import * as Flows from "../Flows.ts"
import * as Relay_ from "../Relay.ts"
import { Broker } from "./Broker.ts"
import { Queues } from "./Queues.ts"
import { Settings } from "./Settings.ts"

export interface Shape {
  readonly relay: Relay_.Relay
  /** The envelopes published lately (the ends of chains no local processor consumes). */
  readonly tap: Flows.Tap
}

export class Relay extends Context.Service<Relay, Shape>()("baton/runtime/Relay") {}

/** Publishes in flight to the front thread. */
const frontRelayWindow = 256

/** Published envelopes the flows API keeps in memory. */
const flowTapSize = 10_000

/** The correlation id of an envelope, for a log line. */
const correlationOf = (payload: string | Buffer): string | undefined => {
  try {
    const id = (JSON.parse(String(payload)) as { correlationId?: unknown }).correlationId
    return typeof id === "string" ? id : undefined
  } catch {
    return undefined
  }
}

export const layer = Layer.effect(
  Relay,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const { outbox } = yield* Queues
    const { face, external, publish } = yield* Broker
    const tap = Flows.tap(flowTapSize)
    // A reply goes out at QoS 0, which no broker queues: with no subscriber it is lost, so say so.
    const relayed: Port["publish"] = (topic, payload, qos) => {
      if (Topics.isReply(topic) && face?.hasSubscribers(topic) === false)
        logger.log("warn", "reply lost: nobody subscribes to its topic (subscribe before sending the request, on the connection that sends it)", { topic, request: correlationOf(payload) })
      tap.record(topic, String(payload))
      return publish(topic, payload, qos)
    }
    // An external broker: with `BATON_RELAY_WINDOW`, several publishes in flight on the publisher's
    // one connection (MQTT.js writes them in order and, after a reconnect, sends the unconfirmed
    // ones again in order before anything newer). Order per key then holds only on a broker that
    // forwards one connection's publishes in the order it received them (Mosquitto:
    // Relay.window.int.test.ts). Aedes does not (Baton's own broker used as an external one
    // included): it handles the PUBLISHes of one read side by side and a later one reached a
    // subscriber first, on the same topic too (Relay.window.aedes.int.test.ts). So not the default.
    // (The killed-broker cases of shutdown.int.test.ts that lost acknowledged messages with a window
    // of 256 were the test broker's: it wrote a PUBACK before storing the message, which lost the
    // last one with a window of 1 too; it now acknowledges once stored, externalBroker.durable.int.test.ts.)
    // The embedded broker: one at a time (Relay.ts). On the front thread, 256: the front publishes
    // them one at a time in order and refuses what follows a failure (front/Worker.ts), and with one
    // each would wait for a turn of both event loops (docs/front-thread.md 4.2).
    const window = external !== undefined ? config.relayWindow : config.front === "thread" ? frontRelayWindow : 1
    return { relay: Relay_.make({ outbox, publish: relayed, logger, window }), tap }
  })
)
