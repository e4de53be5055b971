/**
 * The broker seen by the runtime: confirmed publishes and subscriptions acknowledged after their
 * handler finished. `@baton/broker-mqtt` implements it for any MQTT 3.1.1/5 broker by URL. With the
 * embedded broker the runtime needs only its in-process publish (`@baton/broker-aedes`, whose
 * callback follows storage): its processors are fed through their inboxes, not broker sessions.
 */
export type QoS = 0 | 1 | 2

export interface Message {
  readonly topic: string
  readonly payload: Buffer
}

/** Settles when the message is handled; the broker acknowledges it only then. */
export type Handler = (message: Message) => Promise<void>

/**
 * Settles when every message given (in the order received, those that arrived together) is
 * handled, all or none: the broker acknowledges them only then, in that order. A broker hands a
 * session's next messages over only once the previous ones settled, and none received after a
 * failure on the same connection (they come again).
 */
export type BatchHandler = (messages: ReadonlyArray<Message>) => Promise<void>

export interface Subscription {
  readonly clientId: string
  readonly close: () => Promise<void>
}

export interface SubscribeOptions {
  /** A stable client id: the broker keeps the session (and unacknowledged messages) under it. */
  readonly clientId: string
  /** Use `clientId` as it is, without the instance's prefix: one session for the whole cluster. */
  readonly unprefixed?: boolean
  readonly topics: ReadonlyArray<string>
  readonly qos?: QoS
  /**
   * A session that only this process may hold, while this says so: when the connection closes
   * (another process took the session over, or the network dropped it) and it no longer may, the
   * client ends instead of reconnecting and taking the session back.
   */
  readonly exclusive?: () => boolean
  /** Gives up opening the session (a signal at start): `subscribe` fails at once. */
  readonly signal?: AbortSignal
}

export interface Broker {
  /** Resolves once the broker confirmed the message (PUBACK for QoS 1, PUBCOMP for QoS 2). */
  readonly publish: (topic: string, payload: string | Buffer, qos?: QoS) => Promise<void>
  /**
   * Resolves once the broker granted the subscription; `handler` runs one message at a time. With
   * `batch`, a broker that can takes the messages that arrived together at once through it instead
   * (group commit: one transaction for them); others ignore it.
   */
  readonly subscribe: (options: SubscribeOptions, handler: Handler, batch?: BatchHandler) => Promise<Subscription>
  readonly close: () => Promise<void>
}
