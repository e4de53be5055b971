/**
 * The patches of mqtt-packet and mqtt (`patches/`) guard their `debug(...)` calls, whose rest
 * arguments allocated on every packet even with debugging off. For all packets: the codec still
 * round-trips them, a namespace that is off is not called, and one that is on (`DEBUG=...`, or
 * enabled later) still logs what it logged before the patch.
 */
import { createRequire } from "node:module"
import { PassThrough } from "node:stream"
import { format } from "node:util"
import fc from "fast-check"
import { afterEach, describe, expect, it } from "vitest"

// mqtt-packet and its debug, as aedes resolves them (the copies the runtime runs).
const fromAedes = createRequire(createRequire(import.meta.url).resolve("aedes"))
const mqttPacket = fromAedes("mqtt-packet") as {
  generate: (packet: object) => Buffer
  parser: () => { on: (e: string, f: (p: Record<string, unknown>) => void) => void; parse: (b: Buffer) => number }
}
const debug = createRequire(fromAedes.resolve("mqtt-packet"))("debug") as {
  enable: (namespaces: string) => void
  disable: () => string
  log: (...args: ReadonlyArray<unknown>) => void
}
const mqttDebug = createRequire(createRequire(import.meta.url).resolve("mqtt"))("debug") as typeof debug

const publish = fc.record({
  topic: fc.stringMatching(/^[a-z0-9/]{1,40}$/),
  payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
  messageId: fc.integer({ min: 1, max: 65535 }),
  retain: fc.boolean()
})

/** What the codec and its debug calls do with one packet: the packet parsed back and the namespaces logged. */
const roundTrip = (packet: object) => {
  const logged: Array<string> = []
  const original = debug.log
  debug.log = (...args) => logged.push(format(...args))
  try {
    const wire = mqttPacket.generate(packet)
    const parser = mqttPacket.parser()
    const parsed: Array<Record<string, unknown>> = []
    parser.on("packet", (p) => parsed.push(p))
    parser.parse(wire)
    return { parsed, logged }
  } finally {
    debug.log = original
  }
}

afterEach(() => {
  debug.disable()
  mqttDebug.disable()
})

describe("the guarded debug calls of mqtt-packet and mqtt", () => {
  it("round-trip every publish, call no logger while off and log as before while on", () => {
    fc.assert(
      fc.property(publish, fc.boolean(), (p, on) => {
        const packet = { cmd: "publish", ...p, messageId: p.qos === 0 ? undefined : p.messageId, dup: false }
        if (on) debug.enable("mqtt-packet:*")
        else debug.disable()
        const { parsed, logged } = roundTrip(packet)
        expect(parsed).toHaveLength(1)
        expect(parsed[0]).toMatchObject({ cmd: "publish", topic: p.topic, qos: p.qos, retain: p.retain })
        expect(Buffer.from(parsed[0]!.payload as Buffer).equals(p.payload)).toBe(true)
        if (on) {
          // The namespaces and messages of the unpatched calls, formatted by debug as before.
          expect(logged.some((l) => l.includes("mqtt-packet:writeToStream") && l.includes("publish: packet:"))).toBe(true)
          expect(logged.some((l) => l.includes("mqtt-packet:parser") && l.includes("_parsePublish"))).toBe(true)
        } else expect(logged).toEqual([])
      }),
      { numRuns: 60 }
    )
  })

  it("the mqtt client's log: off calls nothing, on logs its messages", async () => {
    const { MqttClient } = (await import("mqtt")) as unknown as {
      MqttClient: new (streamBuilder: () => NodeJS.ReadWriteStream, options: object) => { log: (...a: ReadonlyArray<unknown>) => void }
    }
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 30 }), fc.boolean(), async (message, on) => {
        if (on) mqttDebug.enable("mqttjs:client")
        else mqttDebug.disable()
        const logged: Array<string> = []
        const original = mqttDebug.log
        mqttDebug.log = (...args) => logged.push(format(...args))
        try {
          // Not connected (manualConnect): only its log is used.
          const client = new MqttClient(() => new PassThrough(), { reconnectPeriod: 0, manualConnect: true })
          logged.length = 0
          client.log("probe %s", message)
          if (on) expect(logged.some((l) => l.includes("mqttjs:client") && l.includes(`probe ${message}`))).toBe(true)
          else expect(logged).toEqual([])
        } finally {
          mqttDebug.log = original
        }
      }),
      { numRuns: 30 }
    )
  })
})
