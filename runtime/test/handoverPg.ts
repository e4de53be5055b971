/**
 * Harness for hand-over tests on PostgreSQL: member m1 (a real Cluster.ts) wired to a runtime
 * Consumer as layers/Consuming.ts wires it, and a peer m2 that heartbeats and owns its partitions
 * until it falls silent (dies).
 */
import { Log, type Envelope } from "@baton/core"
import { Inbox, type Store } from "@baton/store"
import { query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import type * as Consumer from "../src/Consumer.ts"

/**
 * How `partitions` are shared by m1 and m2 (rendezvous hashing over the two names), each member's
 * in claim order; `names`, keys to pick from; `keysIn`, those of the given partitions.
 */
export const sharedOut = (partitions: number) => {
  const owners = Cluster.assign(["m1", "m2"], partitions)
  const names = Array.from({ length: 400 }, (_, i) => `key-${i}`)
  return {
    ofM1: owners.flatMap((owner, part) => (owner === "m1" ? [part] : [])),
    ofM2: owners.flatMap((owner, part) => (owner === "m2" ? [part] : [])),
    names,
    keysIn: (...parts: ReadonlyArray<number>) => names.filter((k) => parts.includes(Inbox.partitionOf(k, partitions)))
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
export const until = async (what: string, ok: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(10)
  }
}

/** m1 (heartbeat 40 ms, dead after 200 ms), its hooks scheduling `consumer`'s messages. */
export const memberM1 = (store: Store, url: string, partitions: number, consumer: () => Consumer.Consumer) =>
  Cluster.make({
    store,
    url,
    instance: "m1",
    partitions,
    heartbeatMs: 40,
    deadAfterMs: 200,
    address: { http: "-", mqtt: "-" },
    logger: Log.silent,
    acquired: async (parts) => void (await consumer().recover(parts)),
    released: () => undefined,
    pending: (parts) => void consumer().recover(parts),
    arrived: (entries) => {
      for (const e of entries) void consumer().schedule(JSON.parse(e.payload) as Envelope.Envelope, e.topic, e.payload)
    },
    adopt: () => undefined
  })

/** m2: a heartbeat every 20 ms the test writes, owning `parts` (it claims and releases nothing itself), until `die`: then it is dead. */
export const peerM2 = async (url: string, parts: ReadonlyArray<number> = []) => {
  const beat = "UPDATE cluster_members SET heartbeat_ms = (extract(epoch from clock_timestamp()) * 1000)::bigint WHERE instance = 'm2'"
  await query(url, "INSERT INTO cluster_members (instance, pid, http, mqtt, started_at, heartbeat_ms) VALUES ('m2', 0, '-', '-', '-', 0)")
  await query(url, beat)
  if (parts.length > 0) await query(url, `UPDATE cluster_partitions SET owner = 'm2', epoch = epoch + 1 WHERE part IN (${parts.join(", ")})`)
  let beating = true
  const beats = (async () => {
    while (beating) {
      await query(url, beat)
      await sleep(20)
    }
  })()
  return {
    die: async () => {
      beating = false
      await beats
    }
  }
}

