/**
 * A message goes to a subscriber at the minimum of the QoS it was published with and the QoS
 * granted to the subscription [MQTT-3.8.4-6]; where several of a client's subscriptions match it,
 * at the maximum of theirs [MQTT-3.3.5-1] (Aedes, patched, sends one copy a client: 3.3.5 allows
 * that or one a subscription). Aedes 1.2 (moscajs/aedes#208) downgraded only for a subscription
 * whose filter is the topic itself: a QoS 2 message went to a wildcard QoS 1 subscription at
 * QoS 2, a retained QoS 1 message to a wildcard QoS 0 one at QoS 1, and a persistent session's
 * stored messages at its restore went out at their published QoS whatever the subscription's.
 * Checked on the PUBLISH packets a real mqtt.js client (MQTT 3.1.1) receives, for live messages
 * (clean and persistent sessions), retained ones, and stored ones (restored at a reconnect), on
 * Aedes' memory store and the disk one the runtime uses.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import type { Aedes } from "aedes"
import { aedesBroker, aedesPersistence, type Kind } from "./sessions.ts"
import { until } from "./waits.ts"

type QoS = 0 | 1 | 2
type FilterKind = "exact" | "+" | "#"
type Mode = "live" | "live-persistent" | "retained" | "stored"
type Sub = { readonly kind: FilterKind; readonly qos: QoS }

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 25)
const cleanup: Array<() => unknown> = []
const brokers = new Map<Kind, Awaited<ReturnType<typeof aedesBroker>>>()
afterAll(async () => {
  for (const b of brokers.values()) await b.close()
  for (const c of cleanup) await c()
})

const brokerOf = async (kind: Kind) => {
  let b = brokers.get(kind)
  if (b === undefined) {
    b = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
    brokers.set(kind, b)
  }
  return b
}

const filterOf = (base: string, kind: FilterKind) => (kind === "exact" ? `${base}/a/b` : kind === "+" ? `${base}/a/+` : `${base}/#`)

const publish = (aedes: Aedes, topic: string, qos: QoS, retain: boolean) =>
  new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: "publish", topic, payload: Buffer.from("m"), qos, retain, dup: false } as never, (err) => (err ? reject(err) : resolve()))
  )

let n = 0

/** The QoS of each PUBLISH of the message the client with `subs` receives, published at `qos` in `mode`. */
const delivered = async (kind: Kind, mode: Mode, qos: QoS, subs: ReadonlyArray<Sub>): Promise<Array<number>> => {
  const { aedes, url } = await brokerOf(kind)
  const base = `gq-${process.pid}-${n++}`
  const topic = `${base}/a/b`
  const clientId = `gq-${kind}-${n}`
  const clean = mode === "live" || mode === "retained"
  const subscriptions = Object.fromEntries(subs.map((s) => [filterOf(base, s.kind), { qos: s.qos }]))
  const got: Array<number> = []
  const listen = (c: mqtt.MqttClient) =>
    c.on("packetreceive", (p) => {
      const packet = p as { cmd: string; topic?: string; qos?: number }
      if (packet.cmd === "publish" && packet.topic === topic) got.push(packet.qos!)
    })
  if (mode === "retained") await publish(aedes, topic, qos, true)
  let c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean, clientId })
  listen(c)
  try {
    await c.subscribeAsync(subscriptions)
    if (mode === "stored") {
      await c.endAsync()
      await publish(aedes, topic, qos, false)
      c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
      listen(c)
      await new Promise<void>((resolve, reject) => (c.once("connect", () => resolve()), c.once("error", reject)))
    } else if (mode !== "retained") {
      await publish(aedes, topic, qos, false)
    }
    await until(() => got.length > 0, 1_500)
    // Any further copy would follow at once.
    await new Promise((r) => setTimeout(r, 30))
    return got
  } finally {
    if (!clean) {
      // Drop the session (a clean connection of its client id discards it).
      await c.endAsync()
      const d = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId })
      await d.endAsync()
    } else {
      await c.endAsync()
    }
  }
}

/** What the client gets: one copy at min(published, highest granted); none for a stored session if that is 0 (a QoS 0 message is not stored for it). */
const expected = (mode: Mode, qos: QoS, subs: ReadonlyArray<Sub>) => {
  const q = Math.min(qos, Math.max(...subs.map((s) => s.qos)))
  return mode === "stored" && q === 0 ? [] : [q]
}

describe.each(["memory", "disk", "redis"] as const)("the QoS a message goes out at (%s store)", (kind) => {
  it("a retained QoS 1 or 2 message goes to a wildcard-only QoS 0 subscription at QoS 0", async () => {
    expect(await delivered(kind, "retained", 1, [{ kind: "#", qos: 0 }])).toEqual([0])
    expect(await delivered(kind, "retained", 2, [{ kind: "+", qos: 0 }])).toEqual([0])
    expect(await delivered(kind, "retained", 2, [{ kind: "#", qos: 1 }])).toEqual([1])
  })

  it("a live QoS 2 message goes to a wildcard QoS 1 subscription at QoS 1", async () => {
    expect(await delivered(kind, "live", 2, [{ kind: "+", qos: 1 }])).toEqual([1])
    expect(await delivered(kind, "live", 2, [{ kind: "#", qos: 1 }])).toEqual([1])
    expect(await delivered(kind, "live-persistent", 2, [{ kind: "#", qos: 1 }])).toEqual([1])
  })

  it("a stored QoS 2 message goes at a persistent session's restore at its subscription's QoS 1", async () => {
    expect(await delivered(kind, "stored", 2, [{ kind: "exact", qos: 1 }])).toEqual([1])
    expect(await delivered(kind, "stored", 2, [{ kind: "+", qos: 1 }])).toEqual([1])
  })

  it("overlapping subscriptions of one client: one copy, at the highest matching QoS, capped by the published one", async () => {
    expect(await delivered(kind, "live", 2, [{ kind: "#", qos: 0 }, { kind: "+", qos: 1 }])).toEqual([1])
    expect(await delivered(kind, "live", 2, [{ kind: "exact", qos: 0 }, { kind: "#", qos: 1 }])).toEqual([1])
    expect(await delivered(kind, "retained", 2, [{ kind: "exact", qos: 0 }, { kind: "+", qos: 1 }])).toEqual([1])
    expect(await delivered(kind, "live", 1, [{ kind: "exact", qos: 0 }, { kind: "#", qos: 2 }])).toEqual([1])
  })

  it("for all (published QoS, subscriptions' filters and QoS, live/persistent/retained/stored): one copy at min(published, max granted)", async () => {
    const qos = fc.constantFrom<QoS>(0, 1, 2)
    const sub = fc.record({ kind: fc.constantFrom<FilterKind>("exact", "+", "#"), qos })
    await fc.assert(
      fc.asyncProperty(
        qos,
        fc.uniqueArray(sub, { minLength: 1, maxLength: 3, selector: (s) => s.kind }),
        fc.constantFrom<Mode>("live", "live-persistent", "retained", "stored"),
        async (published, subs, mode) => {
          expect(await delivered(kind, mode, published, subs)).toEqual(expected(mode, published, subs))
        }
      ),
      { numRuns: runs }
    )
  }, 120_000)
})

describe.each(["memory", "disk", "redis"] as const)("one message for two sessions at different QoS (%s store)", (kind) => {
  it("a session's copy sent at QoS 1 leaves another's, subscribed at QoS 2 and away, at QoS 2 (Redis keeps one copy for all)", async () => {
    const { aedes, url } = await brokerOf(kind)
    const base = `gq2-${process.pid}-${n++}`
    const away = `gq2-away-${kind}`
    const a = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: away })
    await a.subscribeAsync({ [`${base}/#`]: { qos: 2 } })
    await a.endAsync()
    const b = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: `gq2-here-${kind}` })
    const gotB: Array<number> = []
    b.on("packetreceive", (p) => (p.cmd === "publish" ? gotB.push((p as { qos: number }).qos) : undefined))
    await b.subscribeAsync({ [`${base}/+`]: { qos: 1 } })
    await publish(aedes, `${base}/x`, 2, false)
    await until(() => gotB.length > 0, 1_500)
    await b.endAsync()
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: away })
    const gotA: Array<number> = []
    c.on("packetreceive", (p) => (p.cmd === "publish" ? gotA.push((p as { qos: number }).qos) : undefined))
    await until(() => gotA.length > 0, 1_500)
    await c.endAsync()
    expect({ here: gotB, away: gotA }).toEqual({ here: [1], away: [2] })
  })
})
