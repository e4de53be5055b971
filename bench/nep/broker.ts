// The embedded broker alone, with variants (NEP_MODE), for bisecting nepotism.
import { EmbeddedBroker } from "@baton/broker-aedes"
const mode = process.env.NEP_MODE ?? "bare"
const b = await EmbeddedBroker.start({
  host: "127.0.0.1",
  mqttPort: 0,
  ...(mode === "ack" ? { beforeAck: () => new Promise<void>((ok) => setImmediate(ok)) } : {}),
  ...(mode === "ackp" ? { beforeAck: () => Promise.resolve() } : {})
})
console.log(`PORT ${b.mqttPort}`)
process.on("SIGUSR2", () => console.log("MARK"))
