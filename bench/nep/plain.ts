// Plain Aedes on a net server (NEP_AEDES=<path of an aedes.js>: a copy of the package, next to it in
// node_modules/.pnpm/aedes@*/node_modules/, to edit while bisecting; NEP_SUB=1: a subscriber on initiate/#).
import { createServer } from "node:net"
const { Aedes } = (await import(process.env.NEP_AEDES ?? "aedes")) as typeof import("aedes")
const aedes = await Aedes.createBroker({})
if (process.env.NEP_SUB) aedes.mq.on("initiate/#", (_p: unknown, cb: () => void) => cb())
const srv = createServer(aedes.handle).listen(0, "127.0.0.1", () => console.log(`PORT ${(srv.address() as { port: number }).port}`))
process.on("SIGUSR2", () => console.log("MARK"))
