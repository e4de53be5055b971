/**
 * A full garbage collection, for a process that has just started, before it says it is ready.
 * Loading its modules leaves tens of MB young (a bare Aedes peer: some 44 MB live after start), and
 * the first scavenges that find them alive copy them, each a 20-60 ms pause on this 2-vCPU machine
 * (`hopProbe.ts`, with HOP_PEER_V8=--trace-gc): a paced run that starts within seconds of the
 * process measured its start, not its steady state. A full collection promotes them at once.
 */
import v8 from "node:v8"
import { runInNewContext } from "node:vm"

export const settle = (): void => {
  v8.setFlagsFromString("--expose-gc")
  ;(runInNewContext("gc") as (options?: { type: string }) => void)()
}
