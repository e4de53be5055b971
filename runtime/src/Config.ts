/** Runtime configuration from environment variables (the README's configuration table). */
import { join } from "node:path"
import { isPath } from "./Apps.ts"

export interface Config {
  readonly host: string
  readonly mqttPort: number
  /** undefined: MQTT over WebSocket disabled. */
  readonly wsPort: number | undefined
  readonly httpPort: number
  readonly dataDir: string
  /** An external broker; when set, no embedded broker runs. */
  readonly brokerUrl: string | undefined
  /** Prefix of the runtime's MQTT client ids: `<instance>.<processor>`. */
  readonly instance: string
  readonly maxPayloadBytes: number
  readonly maxAttempts: number
  readonly restartDelayMs: number
  /**
   * On an external broker, how many of the outbox relay's publishes may wait for their PUBACK at
   * once on its one connection (Relay.ts `window`); 1 (the default): one at a time. The embedded
   * broker: always one at a time. More keeps the order per key only on a broker that forwards one
   * connection's publishes in the order received (Mosquitto does, Aedes does not: layers/Relay.ts).
   * At most the relay's batch (256) are in flight, whatever the setting.
   */
  readonly relayWindow: number
  /**
   * Durable (default): broker sessions on disk, SQLite `synchronous=NORMAL`, publishes acknowledged
   * after they are logged. Off: sessions in memory and `synchronous=OFF`, for comparison only.
   */
  readonly durable: boolean
  /** Redis for the embedded broker's persistent sessions instead of the data directory. */
  readonly redisUrl: string | undefined
  /** The users file; without it only anonymous local clients (role `client`) can connect. */
  readonly authFile: string | undefined
  /** How often the users file is checked for changes (it is reloaded without a restart). */
  readonly authReloadMs: number
  /** PEM certificate and key: TLS for MQTT, MQTT over WebSocket and HTTP. */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined
  readonly maxConnections: number
  /** HTTP requests in progress at most; past it a request is answered 503 (`/healthz` and `/metrics` exempt). */
  readonly httpMaxConcurrent: number
  /** Publishes per second per client; a faster client is slowed down. */
  readonly publishRate: number
  readonly maxTopicDepth: number
  readonly maxClientIdLength: number
  /** QoS 1/2 messages sent to one client and not yet acknowledged (at most 65,535); past it, its messages are dropped. */
  readonly maxInflight: number
  /** A subscriber whose socket stays full this long is disconnected (it would hold back others). */
  readonly drainTimeoutMs: number
  /**
   * How long processed messages and forwarded initiating events are remembered: the window in
   * which a redelivery or a client's resend is recognised as a duplicate.
   */
  readonly retentionHours: number
  /** Actors per processor; messages are partitioned over them by key, and run concurrently across them. */
  readonly partitions: number
  /** Messages of one processor in memory at most (its actors' mailboxes and running); the rest wait in its durable inbox. */
  readonly maxScheduled: number
  /**
   * PostgreSQL connections: how many transactions (of any processors' partitions) commit at once.
   * 8 by default: on 2 cores, 16 ran slower (more backends taking turns with the runtime; README).
   */
  readonly poolSize: number
  /** The PostgreSQL driver: `pg` (node-postgres) or `effect-sql-pg` (`@effect/sql-pg`). */
  readonly pgDriver: "pg" | "effect-sql-pg"
  /** `broker`: processors chain by events; `mediator`: domain mediators run durable workflows. */
  readonly topology: "broker" | "mediator"
  /**
   * PostgreSQL for every store instead of the embedded SQLite file. Instances sharing it form a
   * cluster: they split the key partitions between them (see Cluster.ts).
   */
  readonly databaseUrl: string | undefined
  /** Key partitions of a cluster (the same on every instance). */
  readonly clusterPartitions: number
  /** How often a cluster instance renews its membership. */
  readonly heartbeatMs: number
  /** Silence after which an instance counts as dead and its partitions move. */
  readonly deadAfterMs: number
  /** How long an instance keeps heartbeating while its cluster tick has not ended (past it, it lets the others take it for dead). */
  readonly tickStuckMs: number
  /** How long a mediator waits for a command's acknowledgement before sending it again. */
  readonly commandTimeoutMs: number
  /** Sends of a command before it counts as failed. */
  readonly commandAttempts: number
  /** The apps to run, in order: reference apps by name (`AppName`) and app modules by path (`Apps.isPath`). */
  readonly apps: ReadonlyArray<string>
  /** Parked messages of one held key before a `parking-alert`. */
  readonly parkMaxCount: number
  /** Age of a held key before a `parking-alert`. */
  readonly parkMaxAgeMs: number
  /** OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`); undefined: no spans recorded. */
  readonly otlpUrl: string | undefined
  /** How often recorded spans are sent in one batch. */
  readonly otlpIntervalMs: number
  /** `text` (readable) or `json` (one object per line). */
  readonly logFormat: "text" | "json"
  /** The least level logged; `debug` adds a line per handled message. */
  readonly logLevel: "debug" | "info" | "warn" | "error"
  /**
   * `log`: initiating events committed in a file of their own, `front/ingress.db`, and handed over
   * to the store (docs/front-thread.md, stage 1); `thread`: that, with the file and the embedded
   * broker on a worker thread of their own (stage 2); `off`: in the store's own log.
   */
  readonly front: "off" | "log" | "thread"
  /** `BATON_FRONT=thread`: entries committed by the front and not yet forwarded past which new initiating events wait. */
  readonly frontBacklog: number
  /**
   * How long the event loop keeps polling for a requester's next request after a reply before it
   * blocks, in microseconds (`IdleSpin`; 0: never): 500 with the embedded broker on SQLite, 0 with
   * PostgreSQL, whose server's backends share the cores.
   */
  readonly idleSpinUs: number
}

export const appNames = ["order-entry", "customer", "trading", "comments", "order-stats", "ping"] as const
export type AppName = (typeof appNames)[number]

/** The apps that run when `BATON_APP` is unset. */
export const defaultApps: ReadonlyArray<AppName> = ["order-entry", "customer"]

/**
 * `BATON_APP`: plain entries replace the defaults (`all` is every reference app), `+entry` adds to
 * them (`+order-stats` is the defaults and order-stats); both together are the plain entries and the
 * added. An entry is a reference app's name or an app module's path (`./src/app.ts`), kept in order.
 */
export const parseApps = (raw: string | undefined): ReadonlyArray<string> => {
  const entries = (raw ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
  const plain = entries.filter((e) => !e.startsWith("+"))
  const added = entries.filter((e) => e.startsWith("+")).map((e) => e.slice(1))
  const unknown = [...plain, ...added].filter((a) => a !== "all" && !isPath(a) && !(appNames as ReadonlyArray<string>).includes(a))
  if (unknown.length > 0 || (raw !== undefined && entries.length === 0))
    throw new ConfigError(
      `BATON_APP must list reference apps among ${appNames.join(", ")} or 'all', or paths of app modules (./src/app.ts) (comma-separated; +entry adds one to the defaults, ${defaultApps.join(",")}), got '${raw ?? ""}'${unknown.length > 0 ? `: unknown ${unknown.join(", ")}` : ""}`
    )
  const listed = [...(plain.length === 0 ? defaultApps : plain), ...added].flatMap((a) => (a === "all" ? appNames : [a]))
  return [...new Set(listed)]
}

const appsOf = (env: Env): ReadonlyArray<string> => parseApps(text(env, "BATON_APP"))

export class ConfigError extends Error {
  override readonly name = "ConfigError"
}

type Env = Readonly<Record<string, string | undefined>>

const port = (env: Env, name: string, fallback: number): number => {
  const raw = env[name]
  if (raw === undefined || raw === "") return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name} must be a port number from 0 to 65535, got '${raw}'`)
  return n
}

const positive = (env: Env, name: string, fallback: number): number => {
  const raw = env[name]
  if (raw === undefined || raw === "") return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`${name} must be a positive whole number, got '${raw}'`)
  return n
}

/** `positive`, at most `max`; `why` says what the bound is. */
const positiveAtMost = (env: Env, name: string, fallback: number, max: number, why: string): number => {
  const n = positive(env, name, fallback)
  if (n > max) throw new ConfigError(`${name} must be at most ${max} (${why}), got '${env[name]}'`)
  return n
}

const flag = (env: Env, name: string, fallback: boolean): boolean => {
  const raw = env[name]
  if (raw === undefined || raw === "") return fallback
  if (/^(1|true|yes|on)$/i.test(raw)) return true
  if (/^(0|false|no|off)$/i.test(raw)) return false
  throw new ConfigError(`${name} must be true or false, got '${raw}'`)
}

const oneOf = <const A extends string>(env: Env, name: string, values: ReadonlyArray<A>, fallback: A): A => {
  const raw = env[name]
  if (raw === undefined || raw === "") return fallback
  if (!values.includes(raw as A)) throw new ConfigError(`${name} must be one of ${values.join(", ")}, got '${raw}'`)
  return raw as A
}

const text = (env: Env, name: string): string | undefined => {
  const raw = env[name]
  return raw === undefined || raw === "" ? undefined : raw
}

const tlsOf = (env: Env): Config["tls"] => {
  const certFile = text(env, "BATON_TLS_CERT")
  const keyFile = text(env, "BATON_TLS_KEY")
  if (certFile === undefined && keyFile === undefined) return undefined
  if (certFile === undefined || keyFile === undefined) throw new ConfigError("TLS needs both BATON_TLS_CERT and BATON_TLS_KEY")
  return { certFile, keyFile }
}

/** `BATON_FRONT`: `log` and `thread` only for a single instance on SQLite with the embedded broker. */
const frontOf = (env: Env): Config["front"] => {
  const raw = text(env, "BATON_FRONT") ?? "off"
  if (raw !== "off" && raw !== "log" && raw !== "thread") throw new ConfigError(`BATON_FRONT must be off, log or thread, got '${raw}'`)
  if (raw !== "off" && text(env, "BATON_DATABASE_URL") !== undefined)
    throw new ConfigError(`BATON_FRONT=${raw} needs the embedded SQLite store (its hand-over mark lives in the same database as what the events become, one instance): unset BATON_DATABASE_URL or BATON_FRONT`)
  if (raw !== "off" && text(env, "BATON_BROKER_URL") !== undefined)
    throw new ConfigError(`BATON_FRONT=${raw} needs the embedded broker (it logs initiating events before their PUBACK): unset BATON_BROKER_URL or BATON_FRONT`)
  return raw
}

/**
 * `BATON_IDLE_SPIN_US`: a whole number of microseconds up to 10,000 (0: off). By default 500 on a
 * single instance on SQLite, 0 with PostgreSQL: polling there takes a core from the server's
 * backends (0.93x the order flow's orders/s side by side). It polls for requests that come through
 * the embedded broker: refused with an external broker.
 */
const idleSpinOf = (env: Env, brokerUrl: string | undefined, databaseUrl: string | undefined): number => {
  const raw = env.BATON_IDLE_SPIN_US
  if (raw === undefined || raw === "") return brokerUrl === undefined && databaseUrl === undefined ? 500 : 0
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 10_000) throw new ConfigError(`BATON_IDLE_SPIN_US must be a whole number of microseconds from 0 to 10000, got '${raw}'`)
  if (n > 0 && brokerUrl !== undefined)
    throw new ConfigError("BATON_IDLE_SPIN_US polls for requests that come through the embedded broker: it needs the embedded broker (unset BATON_BROKER_URL, or set BATON_IDLE_SPIN_US=0)")
  return n
}

const loopbackHost = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/

export const fromEnv = (env: Env = process.env): Config => {
  const ws = text(env, "BATON_WS_PORT")
  const brokerUrl = text(env, "BATON_BROKER_URL")
  if (brokerUrl !== undefined && !/^(mqtts?|wss?|tcp|ssl):\/\//.test(brokerUrl))
    throw new ConfigError(`BATON_BROKER_URL must be an mqtt://, mqtts://, ws:// or wss:// URL, got '${brokerUrl}'`)
  const instance = text(env, "BATON_INSTANCE") ?? "baton"
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(instance)) throw new ConfigError(`BATON_INSTANCE must be 1-40 letters, digits, '-' or '_', got '${instance}'`)
  const host = text(env, "BATON_HOST") ?? "127.0.0.1"
  if (!loopbackHost.test(host) && text(env, "BATON_AUTH_FILE") === undefined)
    throw new ConfigError(`refusing to listen on ${host} without authentication: set BATON_AUTH_FILE (add users with 'pnpm baton user add'), or keep BATON_HOST on 127.0.0.1`)
  const topology = text(env, "BATON_TOPOLOGY") ?? "broker"
  if (topology !== "broker" && topology !== "mediator") throw new ConfigError(`BATON_TOPOLOGY must be broker or mediator, got '${topology}'`)
  const databaseUrl = text(env, "BATON_DATABASE_URL")
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) throw new ConfigError(`BATON_DATABASE_URL must be a postgres:// URL, got '${databaseUrl}'`)
  if (topology === "mediator" && brokerUrl !== undefined && databaseUrl === undefined)
    throw new ConfigError("BATON_TOPOLOGY=mediator with an external broker needs BATON_DATABASE_URL (its command channels go through the shared store); set it or unset BATON_BROKER_URL")
  const otlpUrl = text(env, "BATON_OTLP_URL")
  if (otlpUrl !== undefined && !/^https?:\/\/[^/]/.test(otlpUrl)) throw new ConfigError(`BATON_OTLP_URL must be an http:// or https:// URL (an OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces), got '${otlpUrl}'`)
  const heartbeatMs = positive(env, "BATON_HEARTBEAT_MS", 500)
  const deadAfterMs = positive(env, "BATON_DEAD_AFTER_MS", 3000)
  if (deadAfterMs < 3 * heartbeatMs) throw new ConfigError(`BATON_DEAD_AFTER_MS (${deadAfterMs}) must be at least three heartbeats (BATON_HEARTBEAT_MS=${heartbeatMs})`)
  const tickStuckMs = positive(env, "BATON_TICK_STUCK_MS", Math.max(30_000, 10 * deadAfterMs))
  if (tickStuckMs <= deadAfterMs) throw new ConfigError(`BATON_TICK_STUCK_MS (${tickStuckMs}) must be longer than BATON_DEAD_AFTER_MS (${deadAfterMs})`)
  return {
    host,
    topology,
    databaseUrl,
    clusterPartitions: positive(env, "BATON_CLUSTER_PARTITIONS", 12),
    heartbeatMs,
    deadAfterMs,
    tickStuckMs,
    commandTimeoutMs: positive(env, "BATON_COMMAND_TIMEOUT_MS", 30_000),
    commandAttempts: positive(env, "BATON_COMMAND_ATTEMPTS", 3),
    apps: appsOf(env),
    parkMaxCount: positive(env, "BATON_PARK_MAX_COUNT", 1000),
    parkMaxAgeMs: positive(env, "BATON_PARK_MAX_AGE_MS", 300_000),
    mqttPort: port(env, "BATON_MQTT_PORT", 1883),
    wsPort: ws === "off" ? undefined : port(env, "BATON_WS_PORT", 8083),
    httpPort: port(env, "BATON_HTTP_PORT", 8080),
    dataDir: text(env, "BATON_DATA_DIR") ?? join(process.cwd(), ".baton-data"),
    brokerUrl,
    instance,
    maxPayloadBytes: positive(env, "BATON_MAX_PAYLOAD_BYTES", 256 * 1024),
    maxAttempts: positive(env, "BATON_MAX_ATTEMPTS", 3),
    restartDelayMs: positive(env, "BATON_RESTART_DELAY_MS", 100),
    relayWindow: positive(env, "BATON_RELAY_WINDOW", 1),
    durable: flag(env, "BATON_DURABLE", true),
    redisUrl: text(env, "BATON_REDIS_URL"),
    authFile: text(env, "BATON_AUTH_FILE"),
    authReloadMs: positive(env, "BATON_AUTH_RELOAD_MS", 1000),
    tls: tlsOf(env),
    maxConnections: positive(env, "BATON_MAX_CONNECTIONS", 1000),
    httpMaxConcurrent: positive(env, "BATON_HTTP_MAX_CONCURRENT", 256),
    publishRate: positive(env, "BATON_PUBLISH_RATE", 5000),
    maxTopicDepth: positive(env, "BATON_MAX_TOPIC_DEPTH", 8),
    maxClientIdLength: positive(env, "BATON_MAX_CLIENT_ID_LENGTH", 64),
    // A client's unacknowledged messages each hold one of its 65,535 packet ids [MQTT-2.3.1-1]:
    // past them Aedes gave an id in flight to a second message, and a PUBACK cleared the wrong one.
    maxInflight: positiveAtMost(env, "BATON_MAX_INFLIGHT", 10_000, 65_535, "the packet ids of one client"),
    drainTimeoutMs: positive(env, "BATON_DRAIN_TIMEOUT_MS", 5000),
    partitions: positive(env, "BATON_PARTITIONS", 16),
    maxScheduled: positive(env, "BATON_MAX_SCHEDULED", 1000),
    poolSize: positive(env, "BATON_DB_POOL", 8),
    pgDriver: oneOf(env, "BATON_PG_DRIVER", ["pg", "effect-sql-pg"] as const, "pg"),
    retentionHours: positive(env, "BATON_RETENTION_HOURS", 168),
    otlpUrl,
    otlpIntervalMs: positive(env, "BATON_OTLP_INTERVAL_MS", 1000),
    logFormat: oneOf(env, "BATON_LOG_FORMAT", ["text", "json"] as const, "text"),
    logLevel: oneOf(env, "BATON_LOG_LEVEL", ["debug", "info", "warn", "error"] as const, "info"),
    front: frontOf(env),
    frontBacklog: positive(env, "BATON_FRONT_BACKLOG", 8_192),
    idleSpinUs: idleSpinOf(env, brokerUrl, databaseUrl)
  }
}

/** Which variable sets each listener's port, for error messages. */
export const portVariable: Readonly<Record<string, string>> = {
  MQTT: "BATON_MQTT_PORT",
  "MQTT over WebSocket": "BATON_WS_PORT",
  HTTP: "BATON_HTTP_PORT"
}
