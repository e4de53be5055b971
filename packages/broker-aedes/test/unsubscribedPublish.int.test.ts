/**
 * A QoS 1 publish to a topic nobody subscribes to (the ingress's publishes) leaves nothing per
 * publish behind in Aedes' routing: fastparallel 2.4.1 dropped its pooled holder when it had no
 * function to call (mqemitter's emit without a matching subscriber), a new one each publish, and
 * Aedes made an enqueuer for the stored sessions (and a store call for none) each publish. Both
 * were promoted, dead, by the scavenges of a steady publish rate (about 0.2 KB a publish on the
 * bare broker, bench/nep); both patched. Checked on the pool's holders and, through a real
 * mqtt.js client, on the store's enqueue calls; a stored session still gets the message.
 */
import { createRequire } from "node:module"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup.reverse()) await c()
})

describe("a publish nobody subscribes to", () => {
  it("fastparallel hands its holder back to the pool when it has nothing to call", () => {
    // fastparallel as mqemitter (Aedes' emitter) resolves it.
    const fromAedes = createRequire(import.meta.resolve("aedes"))
    const fastparallel = createRequire(fromAedes.resolve("mqemitter"))("fastparallel") as (o: object) => (that: unknown, fns: ReadonlyArray<unknown>, arg: unknown, done: () => void) => void
    const holders = new Set<unknown>()
    let done = 0
    const parallel = fastparallel({ results: false, released: (h: unknown) => holders.add(h) })
    for (let i = 0; i < 50; i++) parallel(null, [], i, () => done++)
    expect(done).toBe(50)
    // reusify keeps one holder at its head: two take turns (a new one each call before the patch).
    expect(holders.size).toBeLessThanOrEqual(2)
  })

  it("is acknowledged without an enqueue in the store, and a stored session still gets its message", async () => {
    const b = await aedesBroker({ persistence: aedesPersistence("memory", cleanup) })
    cleanup.push(b.close)
    const store = (b.aedes as unknown as { persistence: unknown }).persistence as { outgoingEnqueueCombi: (subs: ReadonlyArray<unknown>, packet: unknown) => Promise<void> }
    const enqueued: Array<number> = []
    const original = store.outgoingEnqueueCombi.bind(store)
    store.outgoingEnqueueCombi = (subs, packet) => (enqueued.push(subs.length), original(subs, packet))
    // A persistent session subscribed to `kept/#`, then offline.
    const sub = await mqtt.connectAsync(b.url, { clientId: `unsub-${process.pid}`, clean: false, protocolVersion: 4, reconnectPeriod: 0 })
    await sub.subscribeAsync("kept/#", { qos: 1 })
    await sub.endAsync()
    const pub = await mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0 })
    b.clients.push(pub)
    for (let i = 0; i < 20; i++) await pub.publishAsync(`nobody/${i}`, "m", { qos: 1 })
    expect(enqueued).toEqual([])
    await pub.publishAsync("kept/1", "k", { qos: 1 })
    expect(enqueued).toEqual([1])
    const got: Array<string> = []
    const back = mqtt.connect(b.url, { clientId: `unsub-${process.pid}`, clean: false, protocolVersion: 4, reconnectPeriod: 0 })
    b.clients.push(back)
    back.on("message", (t, p) => got.push(`${t}:${p.toString()}`))
    await until(() => got.length > 0)
    expect(got).toEqual(["kept/1:k"])
  })
})
