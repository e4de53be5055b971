/**
 * Where the examples find the runtime: from the runtime's own variables (`BATON_HOST`,
 * `BATON_MQTT_PORT`, `BATON_HTTP_PORT`, README's configuration table), so that one environment
 * serves both; `BATON_URL` and `BATON_HTTP` (full URLs) override them. A runtime that cannot be
 * reached is one line on stderr and exit code 1, not a stack trace.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt"

const env = process.env

/** The runtime listens on the wildcard address when told to; a client connects to loopback then. */
const clientHost = (host: string) => (host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host)

const host = clientHost(env.BATON_HOST ?? "127.0.0.1")

const portOf = (name: string, fallback: number): number => {
  const value = env[name]
  if (value === undefined || value === "") return fallback
  // 0 makes the runtime pick a port, which only its log line ("broker listening") tells.
  if (value === "0") fail(`${name}=0 lets the runtime pick a free port: give the example the port it logged`)
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`${name} must be a port number, got '${value}'`)
  return port
}

export function fail(message: string): never {
  console.error(message)
  process.exit(1)
}

export const mqttUrl = env.BATON_URL ?? `mqtt://${host}:${portOf("BATON_MQTT_PORT", 1883)}`
export const httpUrl = env.BATON_HTTP ?? `http://${host}:${portOf("BATON_HTTP_PORT", 8080)}`

const hint = "start it with `pnpm start` and give the example the same BATON_HOST, BATON_MQTT_PORT and BATON_HTTP_PORT"

/** An MQTT 3.1.1 connection to the runtime's broker; exits with one line when there is none. */
export const connect = (options: IClientOptions = {}): Promise<MqttClient> =>
  mqtt.connectAsync(mqttUrl, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options }).catch((error: Error) =>
    fail(`cannot reach the runtime's broker at ${mqttUrl} (${error.message}): ${hint}`)
  )

/** An HTTP request to the runtime, its JSON answer; exits with one line when unreachable or refused. */
export const httpJson = async <A>(method: "GET" | "POST", path: string, body?: unknown): Promise<A> => {
  const url = `${httpUrl}${path}`
  const res = await fetch(url, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }).catch((error: Error) =>
    fail(`cannot reach the runtime's HTTP endpoints at ${httpUrl} (${error.cause instanceof Error ? error.cause.message : error.message}): ${hint}`)
  )
  if (!res.ok) fail(`${method} ${url}: ${res.status} ${await res.text()}`)
  return (await res.json()) as A
}

/** For the examples that wait for events: the likely reason when none come. */
export const silenceHint = `is Baton's runtime the broker at ${mqttUrl}? (another broker, such as Mosquitto, may own the port)`

/** Waits for `done`, or exits with one line after `ms`; the timer is cleared, so the process can end at once. */
export const within = async <A>(ms: number, what: string, done: Promise<A>): Promise<A> => {
  const timer = setTimeout(() => fail(`${what} within ${ms / 1000} s; ${silenceHint}`), ms)
  try {
    return await done
  } finally {
    clearTimeout(timer)
  }
}
