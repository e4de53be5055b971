/** Fresh sessions stores for the broker tests: Aedes' memory one, a directory on disk, a Redis key prefix. */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Aedes } from "aedes"
import { Redis } from "ioredis"
import { Level } from "level"
import persistenceLevel from "aedes-persistence-level"
import persistenceRedis from "aedes-persistence-redis"
import type { EmbeddedBroker } from "@baton/broker-aedes"
import * as TestRedis from "@baton/testkit/redis"

export const redisUrl = process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3"

export type Kind = "memory" | "disk" | "redis"

/** A fresh store of `kind` (the same one for every broker started on it); `cleanup` gets what removes its files or keys. */
export const freshSessions = (kind: Kind, cleanup: Array<() => unknown>): EmbeddedBroker.Sessions => {
  if (kind === "memory") return { kind }
  if (kind === "disk") {
    const dir = mkdtempSync(join(tmpdir(), "baton-sessions-"))
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }))
    return { kind, dir }
  }
  const scope = TestRedis.scoped(redisUrl)
  cleanup.push(scope.clean)
  return { kind, url: scope.url }
}

/** For Aedes without EmbeddedBroker: a fresh Aedes sessions store of `kind`, as EmbeddedBroker makes it (undefined: Aedes' memory one). */
export const aedesPersistence = (kind: Kind, cleanup: Array<() => unknown>): unknown => {
  if (kind === "memory") return undefined
  if (kind === "disk") {
    const dir = mkdtempSync(join(tmpdir(), "baton-sessions-"))
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }))
    return persistenceLevel(new Level(dir))
  }
  const scope = TestRedis.scoped(redisUrl)
  cleanup.push(scope.clean)
  return persistenceRedis({ conn: new Redis(redisUrl, { keyPrefix: scope.prefix }), maxSessionDelivery: 1_000_000 } as never)
}

/**
 * Aedes (patched) on an ephemeral port, with `options` (its store: aedesPersistence); `close` ends
 * the clients put in `clients`, then the broker. `noDelay`: its sockets without Nagle's algorithm,
 * as EmbeddedBroker's (a small write behind an unacknowledged one waits ~40 ms otherwise).
 */
export const aedesBroker = async (options: object, noDelay = false) => {
  const aedes = await Aedes.createBroker(options as never)
  const server = createServer(noDelay ? (socket) => aedes.handle(socket.setNoDelay(true)) : aedes.handle)
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const clients: Array<mqtt.MqttClient> = []
  const close = async () => {
    for (const cl of clients) cl.end(true)
    await new Promise<void>((r) => aedes.close(() => r()))
    await new Promise<void>((r) => server.close(() => r()))
  }
  return { aedes, url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, clients, close }
}

/** Publishes on `aedes` (no client), resolving once it is routed (and stored for the sessions). */
export const aedesPublish = (aedes: Aedes, payload: string, qos: 0 | 1 | 2, topic = "k/1") =>
  new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain: false, dup: false } as never, (err) => (err ? reject(err) : resolve()))
  )

/**
 * Runs `meanwhile` once, within the next connection's storeWill (after the restore of its
 * subscriptions, before registerClient closes the connection it takes over): a live message
 * published then goes to both, held for the new one.
 */
export const atNextStoreWill = (persistence: unknown, meanwhile: () => Promise<void>): void => {
  const store = persistence as { delWill: (client: unknown) => Promise<unknown> }
  const delWill = store.delWill.bind(store)
  let connects = 0
  store.delWill = async (client) => {
    if (++connects === 1) await meanwhile()
    return delWill(client)
  }
}

/**
 * Publishes `n` QoS 1 messages ("0" .. "n-1") to `topic` one at a time, each after its PUBACK
 * (Aedes handles one socket read's publishes side by side: several in flight from one connection
 * have no order to keep; see the README), every `retainEvery`th retained (none when undefined), to a
 * subscriber of `filter` with client id `clientId` (`clean` as given), and gives "in order" or where
 * the order they arrived in first differs, with its neighbours.
 */
export const arrivalOrder = async (
  url: string,
  options: { readonly clientId: string; readonly clean: boolean; readonly filter: string; readonly topic: string; readonly n: number; readonly retainEvery?: number }
): Promise<string> => {
  const sub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: options.clientId, clean: options.clean })
  const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "pub" })
  try {
    await sub.subscribeAsync(options.filter, { qos: 1 })
    const got: Array<number> = []
    const all = new Promise<void>((resolve) =>
      sub.on("message", (_t, payload) => {
        got.push(Number(String(payload)))
        if (got.length === options.n) resolve()
      })
    )
    const every = options.retainEvery
    for (let i = 0; i < options.n; i++) await pub.publishAsync(options.topic, String(i), { qos: 1, retain: every !== undefined && i % every === 0 })
    await all
    const firstOut = got.findIndex((x, i) => x !== i)
    return firstOut === -1 ? "in order" : `out of order from #${firstOut}: ${got.slice(Math.max(0, firstOut - 2), firstOut + 3).join(", ")}`
  } finally {
    pub.end(true)
    sub.end(true)
  }
}
