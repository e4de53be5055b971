/**
 * The embedded broker alone in a process, its sessions in Redis (the URL is the first argument),
 * for the tests that SIGKILL it (restoreCrash): prints `ready <mqtt port>` once it listens.
 */
import { EmbeddedBroker } from "@baton/broker-aedes"

const url = process.argv[2]
if (url === undefined) throw new Error("usage: redisBrokerChild.ts <redis url>")
const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "redis", url } })
console.log(`ready ${broker.mqttPort}`)
