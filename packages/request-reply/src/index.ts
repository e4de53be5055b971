/**
 * Request-reply over MQTT (docs/concepts.md, section 7), for any client on an MQTT.js connection.
 * `request` publishes an envelope with `replyTo` and resolves with the reply, or fails with a
 * typed `RequestTimeout`. Two modes:
 *
 * - `correlation` (default, recommended): one reply topic per client, `reply/<clientId>/replies`,
 *   subscribed once; a reply is matched to its request by `correlationId` = the request's id.
 * - `temporary`: a reply topic unique to the request, `reply/<clientId>/tmp/<request id>`,
 *   subscribed before the request is sent and unsubscribed after the reply or the timeout.
 *
 * A reply that comes after its request timed out is dropped with a log line; nothing is kept for it.
 */
import { randomUUID } from "node:crypto"
import type { MqttClient } from "mqtt"
import { Log, type Envelope } from "@baton/core"

export type Mode = "correlation" | "temporary"

export class RequestTimeout extends Error {
  override readonly name = "RequestTimeout"
  readonly requestId: string
  readonly topic: string
  readonly timeoutMs: number
  constructor(requestId: string, topic: string, timeoutMs: number) {
    super(`no reply to ${topic} request ${requestId} within ${timeoutMs} ms`)
    this.requestId = requestId
    this.topic = topic
    this.timeoutMs = timeoutMs
  }
}

export interface Requester {
  readonly mode: Mode
  /** Publishes `data` on `topic` as an envelope of `type` (the topic's last level by default). */
  readonly request: (topic: string, data: unknown, options?: { readonly timeoutMs?: number; readonly type?: string; readonly id?: string }) => Promise<Envelope.Envelope>
  /** Requests waiting for their reply. */
  readonly pending: () => number
  /** Late replies dropped so far. */
  readonly dropped: () => number
  /** Stops listening; pending requests fail with a timeout when theirs comes. */
  readonly close: () => Promise<void>
}

interface Waiting {
  readonly resolve: (reply: Envelope.Envelope) => void
  readonly timer: NodeJS.Timeout
}

export const make = async (
  client: MqttClient,
  options: { readonly clientId: string; readonly mode?: Mode; readonly timeoutMs?: number; readonly logger?: Log.Logger }
): Promise<Requester> => {
  const mode = options.mode ?? "correlation"
  const logger = options.logger ?? Log.console
  const base = `reply/${options.clientId}`
  const shared = `${base}/replies`
  const waiting = new Map<string, Waiting>()
  let dropped = 0

  const onMessage = (topic: string, payload: Buffer) => {
    if (!topic.startsWith(`${base}/`)) return
    let reply: Envelope.Envelope
    try {
      reply = JSON.parse(payload.toString("utf8")) as Envelope.Envelope
    } catch {
      logger.log("warn", "reply dropped: not JSON", { topic })
      return
    }
    const w = waiting.get(reply.correlationId)
    if (w === undefined) {
      dropped++
      logger.log("info", "late reply dropped", { topic, request: reply.correlationId })
      return
    }
    waiting.delete(reply.correlationId)
    clearTimeout(w.timer)
    w.resolve(reply)
  }
  client.on("message", onMessage)
  if (mode === "correlation") await client.subscribeAsync(shared, { qos: 1 })

  const request: Requester["request"] = async (topic, data, o = {}) => {
    const id = o.id ?? randomUUID()
    const timeoutMs = o.timeoutMs ?? options.timeoutMs ?? 5000
    const replyTo = mode === "correlation" ? shared : `${base}/tmp/${id}`
    if (mode === "temporary") await client.subscribeAsync(replyTo, { qos: 1 })
    const type = o.type ?? topic.slice(topic.lastIndexOf("/") + 1)
    try {
      return await new Promise<Envelope.Envelope>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          reject(new RequestTimeout(id, topic, timeoutMs))
        }, timeoutMs)
        waiting.set(id, { resolve, timer })
        client.publishAsync(topic, JSON.stringify({ id, type, replyTo, data }), { qos: 1 }).catch((error: unknown) => {
          waiting.delete(id)
          clearTimeout(timer)
          reject(error instanceof Error ? error : new Error(String(error)))
        })
      })
    } finally {
      if (mode === "temporary") await client.unsubscribeAsync(replyTo).catch(() => undefined)
    }
  }

  return {
    mode,
    request,
    pending: () => waiting.size,
    dropped: () => dropped,
    close: async () => {
      client.off("message", onMessage)
      if (mode === "correlation" && client.connected) await client.unsubscribeAsync(shared).catch(() => undefined)
    }
  }
}
