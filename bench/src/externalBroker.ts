/**
 * A broker of one benchmark run's own, outside the runtime's process (`ab.ts`, `acceptAb.ts`: a tree
 * given as `<tree>#mosquitto`, `<tree>#aedes` or `<tree>#aedes-memory`), for the runtime's
 * `BATON_BROKER_URL`: a throwaway Mosquitto (`Mosquitto.start`: no persistence, its PUBACK at once),
 * or Baton's own broker alone in a process (`peers/aedes.ts`: `packages/broker-aedes`, a QoS 1 PUBACK
 * once stored for the persistent sessions; sessions on disk, or in memory for `aedes-memory`).
 * With its process's id, for its CPU.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Mosquitto } from "@baton/testkit"
import { child } from "./lib.ts"

export interface External {
  readonly port: number
  readonly url: string
  readonly pid: number
  readonly stop: () => Promise<void>
}

/** The `mosquitto` this process started last (a child of this process). */
const mosquittoChild = (): number => {
  const pids = readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
        return stat.includes("(mosquitto)") && Number(stat.split(") ")[1]!.split(" ")[1]) === process.pid
      } catch {
        return false
      }
    })
  return Math.max(...pids.map(Number))
}

/** The kinds a tree's `#variant` may name. */
export const isExternal = (variant: string | undefined): boolean => variant === "mosquitto" || variant === "aedes" || variant === "aedes-memory"

/** Starts the broker `variant` names (see the header); undefined for any other (the runtime's embedded broker). */
export const externalBroker = async (variant: string | undefined): Promise<External | undefined> => {
  if (variant === "mosquitto") {
    const broker = await Mosquitto.start({ inflight: Number(process.env.BATON_AB_MOSQUITTO_INFLIGHT ?? 20) })
    return { ...broker, pid: mosquittoChild() }
  }
  if (variant !== "aedes" && variant !== "aedes-memory") return undefined
  const dir = mkdtempSync(join(tmpdir(), "baton-ab-broker-"))
  const peer = await child("peers/aedes.ts", variant === "aedes" ? { SESSIONS_DIR: dir } : {})
  const port = peer.info.port as number
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    pid: peer.child.pid!,
    stop: async () => {
      await peer.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
