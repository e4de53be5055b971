/**
 * The broker's guard, Mosquitto 2 style: safe by default, explicit to open up. Without a users file
 * the runtime listens on loopback only and every (local, anonymous) client gets the `client` role;
 * with one, clients log in and get their users' roles. Limits apply to everyone; services are exempt
 * from the publish rate only (and may use any client id).
 */
import { Acl, Topic, Users } from "@baton/auth"
import { Topics, type Log } from "@baton/core"
import type { EmbeddedBroker } from "@baton/broker-aedes"

export interface Limits {
  readonly maxPayloadBytes: number
  readonly maxConnections: number
  readonly publishRate: number
  readonly maxTopicDepth: number
  readonly maxClientIdLength: number
  readonly maxInflight: number
}

export type Counter = "connect-refused" | "publish-refused" | "subscribe-refused" | "slow-consumer-refused" | "inflight-refused" | "publish-throttled"

const clientIdPattern = /^[A-Za-z0-9._:-]+$/

/** With authentication, a user's client ids are its name, or its name and a suffix. */
export const ownsClientId = (username: string, clientId: string): boolean =>
  clientId === username || clientId.startsWith(`${username}-`) || clientId.startsWith(`${username}.`)

/** The reason a publish must be refused, or undefined; pure, so it is tested without a broker. */
export const publishRefusal = (roles: ReadonlyArray<Acl.Role>, clientId: string, topic: string, payload: Buffer, limits: Limits): string | undefined => {
  if (!Topic.isValidTopic(topic)) return `topic '${topic}' is not a valid publish topic`
  if (Topic.depth(topic) > limits.maxTopicDepth) return `topic '${topic}' has more than ${limits.maxTopicDepth} levels`
  if (!Acl.mayPublish(roles, clientId, topic)) return `roles ${roles.join(",")} may not publish on '${topic}'`
  // An oversized initiating event is let through to the ingress, which records and publishes the rejection.
  if (payload.length > limits.maxPayloadBytes && Topics.initiatingName(topic) === undefined)
    return `payload of ${payload.length} bytes exceeds the limit of ${limits.maxPayloadBytes} bytes`
  return undefined
}

export const subscribeRefusal = (roles: ReadonlyArray<Acl.Role>, clientId: string, filter: string, limits: Limits): string | undefined => {
  if (Topic.depth(filter) > limits.maxTopicDepth) return `filter '${filter}' has more than ${limits.maxTopicDepth} levels`
  if (!Acl.maySubscribe(roles, clientId, filter)) return `roles ${roles.join(",")} may not subscribe to '${filter}'`
  return undefined
}

export const make = (options: {
  /** The users file as it is now (it is reloaded when it changes); undefined: anonymous local clients. */
  readonly users: () => Users.File | undefined
  readonly limits: Limits
  readonly logger: Log.Logger
}) => {
  const { limits, logger } = options
  // By connection, not client id: a takeover's old connection is reported gone after the new one
  // logged in with the same client id [MQTT-3.1.4-2], and must not take the new one's state along.
  const roles = new WeakMap<EmbeddedBroker.Connection, ReadonlyArray<Acl.Role>>()
  const buckets = new WeakMap<EmbeddedBroker.Connection, { tokens: number; at: number }>()
  const counts: Record<Counter, number> = { "connect-refused": 0, "publish-refused": 0, "subscribe-refused": 0, "slow-consumer-refused": 0, "inflight-refused": 0, "publish-throttled": 0 }
  let throttleLogged = 0
  // When each client's in-flight refusal was last logged.
  const inflightLogged = new Map<string, number>()

  const rolesOf = (connection: EmbeddedBroker.Connection): ReadonlyArray<Acl.Role> => roles.get(connection) ?? (options.users() === undefined ? ["client"] : [])
  const exempt = (connection: EmbeddedBroker.Connection) => rolesOf(connection).includes("service")

  const guard: EmbeddedBroker.Guard = {
    maxConnections: limits.maxConnections,
    maxInflight: limits.maxInflight,
    connect: async (connection, { username, password, assignedId }) => {
      const clientId = connection.id
      // [MQTT-3.1.3-9]: CONNACK 2. The broker's own ids (`aedes_<uuid>`) are valid and unique.
      if (!assignedId && clientId.length > limits.maxClientIdLength)
        return { ok: false, badClientId: true, reason: `client id longer than ${limits.maxClientIdLength} characters` }
      if (!assignedId && !clientIdPattern.test(clientId)) return { ok: false, badClientId: true, reason: "client id may hold only letters, digits and . _ : -" }
      const users = options.users()
      if (users === undefined) {
        roles.set(connection, ["client"])
        return { ok: true }
      }
      if (username === undefined || password === undefined) return { ok: false, reason: "authentication required: no username or password" }
      const granted = await Users.authenticate(users, username, password.toString("utf8"))
      if (granted === undefined) return { ok: false, reason: `wrong username or password for user '${username}'` }
      // A client id belongs to its user: taking over another user's session would hand over its
      // queued replies. An assigned one is new and has a clean session: nothing to take over.
      if (!assignedId && !granted.includes("service") && !ownsClientId(username, clientId))
        return { ok: false, reason: `client id '${clientId}' does not belong to user '${username}': use '${username}' or '${username}-<suffix>'` }
      roles.set(connection, granted)
      return { ok: true }
    },
    publish: (connection, topic, payload) => publishRefusal(rolesOf(connection), connection.id, topic, payload, limits),
    subscribe: (connection, filter) => subscribeRefusal(rolesOf(connection), connection.id, filter, limits),
    // A token bucket per client; a publisher over its rate is slowed down (its PUBACKs wait), not cut off.
    throttle: (connection) => {
      if (exempt(connection)) return undefined
      const now = Date.now()
      const b = buckets.get(connection) ?? { tokens: limits.publishRate, at: now }
      b.tokens = Math.min(limits.publishRate, b.tokens + ((now - b.at) / 1000) * limits.publishRate)
      b.at = now
      b.tokens -= 1
      buckets.set(connection, b)
      if (b.tokens >= 0) return undefined
      counts["publish-throttled"]++
      if (now - throttleLogged > 1000) {
        throttleLogged = now
        logger.log("warn", "publish rate limit hit, slowing client down", { client: connection.id, limit: `${limits.publishRate}/s` })
      }
      return new Promise<void>((r) => setTimeout(r, Math.ceil((-b.tokens / limits.publishRate) * 1000)))
    },
    disconnected: (connection) => {
      roles.delete(connection)
      buckets.delete(connection)
    },
    onRefused: (what, clientId, reason, topic) => {
      counts[`${what}-refused`]++
      // One line per second at most per client for the limit a misbehaving client hits message
      // after message (per client: another's refusals must not hide its line).
      const now = Date.now()
      if (what === "inflight") {
        if (now - (inflightLogged.get(clientId) ?? 0) < 1000) return
        if (inflightLogged.size >= 10_000) inflightLogged.clear()
        inflightLogged.set(clientId, now)
      }
      logger.log("warn", `${what} refused`, { client: clientId, topic, reason })
    }
  }
  return { guard, counts: () => ({ ...counts }) }
}
