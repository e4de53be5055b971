/**
 * `node bench/src/crossing.ts [<messages>] [<rounds>]`: what a "front" worker thread (one owning the
 * broker and the ingress) would add to the main thread per message it hands over: the CPU, on each
 * thread (its `/proc/thread-self/schedstat` time on a core), of `postMessage` between a worker and the
 * main thread, for an accepted order's envelope (some 600 bytes) as an object (structured clone) or
 * as its JSON text, one message a `postMessage` or a batch of 10 (as a group commit would hand them
 * over), each way: `in` from the worker to the main thread (an accepted order), `out` from the main
 * thread to the worker (an event for the broker to publish). The receiver reads one field of each.
 * Prints microseconds per message on the sending and the receiving thread, medians of the rounds.
 */
import { readFileSync } from "node:fs"
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads"
import { order } from "./scenarios/orders.ts"

/** This thread's time on a core so far, in microseconds. */
const onCoreUs = (): number => Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1000

const envelope = (i: number) => ({
  id: crypto.randomUUID(),
  type: "place-order",
  key: `bench-${i % 100}`,
  correlationId: crypto.randomUUID(),
  causationId: crypto.randomUUID(),
  occurredAt: new Date().toISOString(),
  traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01`,
  source: "ingress",
  data: order(i)
})

interface Spec {
  readonly count: number
  readonly batch: number
  readonly text: boolean
}

/** Sends `count` envelopes in batches of `batch` through `post`, a batch a turn of the event loop; its CPU per message. */
const send = async (spec: Spec, post: (m: unknown) => void): Promise<number> => {
  const all = Array.from({ length: spec.count }, (_, i) => envelope(i))
  const t0 = onCoreUs()
  for (let i = 0; i < spec.count; i += spec.batch) {
    const batch = all.slice(i, i + spec.batch)
    const items = spec.text ? batch.map((e) => JSON.stringify(e)) : batch
    post(spec.batch === 1 ? items[0] : items)
    if ((i / spec.batch) % 8 === 7) await new Promise((r) => setImmediate(r))
  }
  return (onCoreUs() - t0) / spec.count
}

/** Receives `count` envelopes through `on`; resolves with its CPU per message once all came. */
const receive = (spec: Spec, on: (f: (m: unknown) => void) => void): Promise<number> =>
  new Promise((done) => {
    let seen = 0
    let t0 = -1
    let sink = 0
    on((m) => {
      if (t0 < 0) t0 = onCoreUs()
      for (const item of Array.isArray(m) ? m : [m]) {
        const e = (spec.text ? JSON.parse(item as string) : item) as { id: string }
        sink += e.id.length
        seen++
      }
      if (seen === spec.count) done((onCoreUs() - t0) / spec.count + sink * 0)
    })
  })

if (!isMainThread) {
  const { spec, direction } = workerData as { spec: Spec; direction: "in" | "out" }
  if (direction === "in") {
    parentPort!.once("message", async () => parentPort!.postMessage({ sent: await send(spec, (m) => parentPort!.postMessage(m)) }))
  } else {
    const got = receive(spec, (f) => parentPort!.on("message", f))
    parentPort!.postMessage("ready")
    parentPort!.postMessage({ received: await got })
  }
} else {
  const count = Number(process.argv[2] ?? 20_000)
  const rounds = Number(process.argv[3] ?? 5)
  const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  for (const direction of ["in", "out"] as const) {
    for (const batch of [1, 10]) {
      for (const text of [false, true]) {
        const spec: Spec = { count, batch, text }
        const senders: Array<number> = []
        const receivers: Array<number> = []
        for (let r = 0; r < rounds; r++) {
          const worker = new Worker(new URL(import.meta.url), { workerData: { spec, direction } })
          if (direction === "in") {
            const results = new Promise<number>((ok) => worker.on("message", (m: { sent?: number }) => m?.sent !== undefined && ok(m.sent)))
            const got = receive(spec, (f) => worker.on("message", (m) => (m !== null && typeof m === "object" && "sent" in m ? undefined : f(m))))
            worker.postMessage("go")
            receivers.push(await got)
            senders.push(await results)
          } else {
            await new Promise((ok) => worker.once("message", ok))
            const received = new Promise<number>((ok) => worker.on("message", (m: { received?: number }) => m?.received !== undefined && ok(m.received)))
            senders.push(await send(spec, (m) => worker.postMessage(m)))
            receivers.push(await received)
          }
          await worker.terminate()
        }
        console.log(
          `${direction === "in" ? "worker -> main" : "main -> worker"}, ${batch} a postMessage, ${text ? "JSON text" : "object"}: ` +
            `sender ${median(senders).toFixed(1)} us/message [${Math.min(...senders).toFixed(1)}-${Math.max(...senders).toFixed(1)}], receiver ${median(receivers).toFixed(1)} us/message [${Math.min(...receivers).toFixed(1)}-${Math.max(...receivers).toFixed(1)}]`
        )
      }
    }
  }
  process.exit(0)
}
