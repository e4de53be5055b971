// A control for run.ts: a bare TCP server speaking just enough MQTT (CONNACK, PUBACK), NEP_MODE=raw (no parser) or parser (mqtt-packet).
import { createServer } from "node:net"
import { createRequire } from "node:module"
// mqtt-packet as mqtt.js resolves it (not a dependency of the bench itself).
const mqtt = createRequire(import.meta.resolve("mqtt"))("mqtt-packet") as { parser: (o: object) => { on: (e: string, f: (p: never) => void) => void; parse: (b: Buffer) => void }; writeToStream: (p: object, s: unknown) => boolean }
const mode = process.env.NEP_MODE ?? "parser"
const srv = createServer((sock) => {
  sock.setNoDelay(true)
  if (mode === "parser") {
    const p = mqtt.parser({ protocolVersion: 4 })
    p.on("packet", (pk: { cmd: string; messageId?: number }) => {
      if (pk.cmd === "connect") mqtt.writeToStream({ cmd: "connack", returnCode: 0, sessionPresent: false }, sock)
      else if (pk.cmd === "publish") mqtt.writeToStream({ cmd: "puback", messageId: pk.messageId! }, sock)
    })
    sock.on("data", (d) => p.parse(d))
  } else {
    let first = true
    sock.on("data", (d) => {
      if (first) { first = false; sock.write(Buffer.from([0x20, 2, 0, 0])); return }
      // naive: every publish's id at a fixed offset is wrong in general; find packets by length
      let i = 0
      while (i < d.length) {
        let len = 0, mul = 1, j = i + 1, b
        do { b = d[j++]!; len += (b & 127) * mul; mul *= 128 } while (b & 128)
        const tl = (d[j]! << 8) | d[j + 1]!
        const id = (d[j + 2 + tl]! << 8) | d[j + 3 + tl]!
        sock.write(Buffer.from([0x40, 2, id >> 8, id & 255]))
        i = j + len
      }
    })
  }
}).listen(0, "127.0.0.1", () => console.log(`PORT ${(srv.address() as { port: number }).port}`))
process.on("SIGUSR2", () => console.log("MARK"))
