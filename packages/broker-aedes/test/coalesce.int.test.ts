/**
 * The embedded broker corks a client's socket from a message's forward to that client until just
 * after Aedes writes it (a later `setImmediate`): a request's PUBACK, written right after its
 * `beforeAck` (where the runtime commits it and publishes its reply), leaves in the reply's
 * write. The cork must never lose, reorder or hold back a message: every client gets everything
 * published to it, in order, whatever the mix of requests, QoS 0 and 1 publishes and clients.
 */
import { Socket } from "node:net"
import { afterAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 25)

/**
 * The socket writes of the broker's side (sockets whose local port is the broker's): each call
 * of `_write`/`_writev` is one write to the kernel, with the MQTT packet types it carries.
 */
const writes: Array<{ readonly port: number; readonly types: Array<number> }> = []
const proto = Socket.prototype as unknown as {
  _write: (chunk: Buffer, encoding: string, cb: () => void) => void
  _writev: (chunks: ReadonlyArray<{ chunk: Buffer }>, cb: () => void) => void
}
const write0 = proto._write
const writev0 = proto._writev
let brokerPort = 0
/** The packet types (high nibble of each fixed header's first byte) in one write's bytes. */
const packetTypes = (bytes: Buffer): Array<number> => {
  const types: Array<number> = []
  let i = 0
  while (i < bytes.length) {
    types.push(bytes[i]! >> 4)
    let length = 0
    let shift = 0
    let j = i + 1
    for (;;) {
      const b = bytes[j++]!
      length += (b & 0x7f) << shift
      shift += 7
      if ((b & 0x80) === 0) break
    }
    i = j + length
  }
  return types
}
proto._write = function (this: Socket, chunk, encoding, cb) {
  if (this.localPort === brokerPort) writes.push({ port: this.remotePort!, types: packetTypes(Buffer.from(chunk)) })
  return write0.call(this, chunk, encoding, cb)
}
proto._writev = function (this: Socket, chunks, cb) {
  if (this.localPort === brokerPort) writes.push({ port: this.remotePort!, types: packetTypes(Buffer.concat(chunks.map((c) => Buffer.from(c.chunk)))) })
  return writev0.call(this, chunks, cb)
}
afterAll(() => {
  proto._write = write0
  proto._writev = writev0
})

const PUBLISH = 3
const PUBACK = 4

type Step =
  | { readonly kind: "request"; readonly client: number }
  | { readonly kind: "publish"; readonly client: number; readonly qos: 0 | 1 }
  | { readonly kind: "broadcast"; readonly qos: 0 | 1 }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("request" as const), client: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant("publish" as const), client: fc.integer({ min: 0, max: 2 }), qos: fc.constantFrom(0 as const, 1 as const) }),
  // To every client at once: several sockets corked together.
  fc.record({ kind: fc.constant("broadcast" as const), qos: fc.constantFrom(0 as const, 1 as const) })
)

describe("EmbeddedBroker: one write for a request's PUBACK and its reply", () => {
  it("every client gets all its messages in order; a request's PUBACK leaves with its reply", async () => {
    let broker: EmbeddedBroker.EmbeddedBroker | undefined
    // In-process publishes one after the other, at once when none is under way, as the runtime's
    // relay makes them (Aedes drops a message emitted after a later one of the same broker: its
    // dedupe by counter).
    let last: Promise<void> = Promise.resolve()
    let underWay = 0
    const inOrder = (topic: string, payload: string, qos: 0 | 1): Promise<void> => {
      const go = () => broker!.publish(topic, payload, qos)
      const p = underWay === 0 ? go() : last.then(go)
      underWay++
      last = p.finally(() => void underWay--)
      return p
    }
    // The runtime's path: the request's commit publishes the reply (synchronously, to Aedes), then
    // `beforeAck` resolves and Aedes writes the PUBACK.
    broker = await EmbeddedBroker.start({
      host: "127.0.0.1",
      mqttPort: 0,
      beforeAck: (_clientId, _topic, payload) => {
        // Replies go out at QoS 0, as the runtime's do.
        const request = JSON.parse(payload.toString("utf8")) as { readonly replyTo: string; readonly n: number }
        void inOrder(request.replyTo, JSON.stringify({ n: request.n }), 0)
        return Promise.resolve()
      }
    })
    brokerPort = broker.mqttPort
    const clients = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, clientId: `c${i}`, reconnectPeriod: 0 })
        ;(c.stream as Socket).setNoDelay(true)
        const got: Array<number> = []
        c.on("message", (_topic, payload) => got.push((JSON.parse(payload.toString("utf8")) as { n: number }).n))
        await c.subscribeAsync([`to/c${i}`, "to/all"], { qos: 1 })
        return { c, got, port: (c.stream as Socket).localPort! }
      })
    )
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), fc.boolean(), async (steps, sequential) => {
          for (const c of clients) c.got.length = 0
          writes.length = 0
          const sent: Array<Array<number>> = [[], [], []]
          let n = 0
          const run = async (s: Step) => {
            const i = n++
            if (s.kind === "broadcast") {
              for (const to of sent) to.push(i)
              return inOrder("to/all", JSON.stringify({ n: i }), s.qos)
            }
            sent[s.client]!.push(i)
            if (s.kind === "publish") return inOrder(`to/c${s.client}`, JSON.stringify({ n: i }), s.qos)
            // A request, answered on the requester's own topic.
            await clients[s.client]!.c.publishAsync("initiate/x", JSON.stringify({ replyTo: `to/c${s.client}`, n: i }), { qos: 1 })
          }
          if (sequential) for (const s of steps) await run(s)
          else await Promise.all(steps.map(run))
          // Nothing held back or lost: everything arrives, once; one step at a time, in the order
          // sent (concurrent: a request's reply is published only once the request got there).
          await vi.waitFor(() => expect(clients.map((c) => c.got.length)).toEqual(sent.map((s) => s.length)), { timeout: 5000, interval: 5 })
          for (const [i, c] of clients.entries()) expect(sequential ? c.got : c.got.toSorted((a, b) => a - b)).toEqual(sent[i])
          if (!sequential) return
          // One request at a time: its PUBACK leaves in the same write as its reply.
          for (const s of steps) {
            if (s.kind !== "request") continue
            const port = clients[s.client]!.port
            const together = writes.filter((w) => w.port === port && w.types.includes(PUBACK))
            expect(together.length).toBeGreaterThan(0)
            for (const w of together) expect(w.types).toContain(PUBLISH)
          }
        }),
        { numRuns: runs }
      )
    } finally {
      for (const c of clients) await c.c.endAsync()
      await broker.close()
    }
  }, 120_000)
})
