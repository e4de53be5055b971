/**
 * Scenario 3, the mediator order workflow (durable): workflows per second to
 * `workflow-completed`, and completion latency at a fixed rate; versus the same five steps with
 * BullMQ flows on the local Redis (two worker processes). Also the runtime's memory after many
 * completed workflows versus after a few (state is deleted on completion: it must stay flat).
 */
import { Queue, QueueEvents, type ConnectionOptions } from "bullmq"
import { Redis } from "ioredis"
import { burst, child, counter, warmup, within } from "../lib.ts"
import { paced, tracker, type LatencySummary } from "../pacing.ts"
import { order, placeOrders, type Placed } from "./orders.ts"
import { onRuntime } from "./runtime.ts"

export type WorkflowResult = Placed


/** The runtime's memory as it reports it on /healthz after a full collection (it runs with --expose-gc). */
const memoryOf = async (httpPort: number): Promise<{ readonly rssMb: number; readonly heapUsedMb: number }> => {
  const health = (await (await fetch(`http://127.0.0.1:${httpPort}/healthz?gc=1`)).json()) as { memory: { rssMb: number; heapUsedMb: number } }
  return health.memory
}

/** Runs `count` workflows (burst, or paced at `rate`) on a running mediator runtime. */
export const drive = (port: number, count: number, rate?: number): Promise<WorkflowResult> => placeOrders(port, count, "events/workflow-completed", rate)

export const baton = (count: number, rate?: number) =>
  onRuntime({ BATON_TOPOLOGY: "mediator" }, async (r) => {
    await drive(r.mqttPort!, warmup())
    return drive(r.mqttPort!, count, rate)
  })

/** RSS of the runtime after `few` completed workflows, and after `many` in total. */
export const memory = (few: number, many: number, progress: (done: number) => void) =>
  onRuntime({ BATON_TOPOLOGY: "mediator", NODE_OPTIONS: "--expose-gc" }, async (r) => {
    await drive(r.mqttPort!, few)
    const after = await memoryOf(r.httpPort)
    let done = few
    while (done < many) {
      const n = Math.min(5000, many - done)
      await drive(r.mqttPort!, n)
      done += n
      progress(done)
    }
    const end = await memoryOf(r.httpPort)
    return { few, many, rssFewMb: after.rssMb, rssManyMb: end.rssMb, heapFewMb: after.heapUsedMb, heapManyMb: end.heapUsedMb }
  })

/** Each stage queue's job counts, and why the first failed jobs failed. */
const whereJobsAre = async (connection: ConnectionOptions, prefix: string): Promise<string> => {
  const parts: Array<string> = []
  for (const name of ["wf-create", "wf-command", "wf-step2", "wf-step3", "wf-step4", "wf-step5"]) {
    const queue = new Queue(name, { connection, prefix })
    try {
      const counts = await queue.getJobCounts("waiting", "active", "delayed", "waiting-children", "failed", "completed")
      const failed = await queue.getFailed(0, 2)
      parts.push(`${name} ${JSON.stringify(counts)}${failed.map((j) => ` failed ${j.id}: ${j.failedReason}`).join("")}`)
    } finally {
      await queue.close()
    }
  }
  return parts.join("; ")
}

/** The BullMQ peer started: its worker processes, and `batch` to run workflows through it (job ids `<prefix><i>`). */
export interface BullmqPeer {
  /** The two worker processes (Redis is not counted: other work shares it). */
  readonly pids: ReadonlyArray<number>
  /** `count` workflows, a burst (500 in flight) or paced at `rate`; resolves when all have completed, with the seconds it took and their latencies. */
  readonly batch: (count: number, prefix: string, rate?: number, ms?: number) => Promise<{ readonly seconds: number; readonly latencies: LatencySummary }>
}

/** Starts the BullMQ peer (two worker processes on a fresh prefix of the local Redis) and stops it after `body`. */
export const bullmqPeer = async <A>(body: (peer: BullmqPeer) => Promise<A>): Promise<A> => {
  const db = 5
  const prefix = `bench${Date.now()}`
  const redis = new Redis({ host: "127.0.0.1", port: 6379, db })
  await redis.flushdb()
  const workers = await Promise.all([0, 1].map(() => child("peers/bullmq.ts", { REDIS_DB: String(db), BULL_PREFIX: prefix })))
  const connection = { host: "127.0.0.1", port: 6379, db, maxRetriesPerRequest: null }
  const queue = new Queue("wf-create", { connection, prefix })
  // From the stream's start (it is new: a fresh prefix): QueueEvents's default, '$', is taken at its
  // first XREAD, which can come after waitUntilReady and after the first workflows completed; a run
  // then waited for completions it had missed (BullMQ issue #2874).
  const events = new QueueEvents("wf-step5", { connection, prefix, lastEventId: "0-0" })
  const failed = new Promise<never>((_, reject) => {
    queue.on("error", reject)
    events.on("error", reject)
  })
  const batches = new Set<{ readonly workflows: ReturnType<typeof tracker<string>>; readonly completed: ReturnType<typeof counter> }>()
  let progressAt = performance.now()
  events.on("completed", ({ jobId }) => {
    for (const b of batches)
      if (b.workflows.done(jobId)) {
        progressAt = performance.now()
        return b.completed.hit()
      }
  })
  try {
    await events.waitUntilReady()
    return await body({
      pids: workers.map((w) => w.child.pid!),
      batch: async (count, idPrefix, rate, ms = 600_000) => {
        const b = { workflows: tracker<string>(), completed: counter(count) }
        batches.add(b)
        let watchdog: NodeJS.Timeout | undefined
        try {
          // Should completions stop coming again (a missed event, a stuck stage), 30 s without one fails
          // the run at once, saying where the jobs are, rather than at the overall limit.
          const stalled = new Promise<never>((_, reject) => {
            watchdog = setInterval(() => {
              if (performance.now() - progressAt < 30_000) return
              clearInterval(watchdog)
              void whereJobsAre(connection, prefix).then(
                (where) => reject(new Error(`BullMQ made no progress for 30 s, ${b.completed.count()}/${count} workflows completed (not: ${b.workflows.pending().slice(0, 5).join(",")}); ${where}`)),
                reject
              )
            }, 1000)
          })
          progressAt = performance.now()
          const t0 = performance.now()
          const add = (i: number, due?: number) => {
            const id = `${idPrefix}${i}`
            b.workflows.sent(id, due)
            return queue.add("create-order", order(i), { jobId: id, removeOnComplete: true })
          }
          if (rate === undefined) await burst(count, 500, (i) => add(i))
          else await paced(rate, count, (i, due) => void add(i, due))
          await within(Promise.race([b.completed.done, failed, stalled]), ms, `${count} BullMQ workflows completed`)
          return { seconds: (performance.now() - t0) / 1000, latencies: b.workflows.summary() }
        } finally {
          clearInterval(watchdog)
          batches.delete(b)
        }
      }
    })
  } finally {
    await events.close()
    await queue.close()
    await Promise.all(workers.map((w) => w.stop()))
    await redis.flushdb()
    redis.disconnect()
  }
}

export const bullmq = (count: number, rate?: number): Promise<WorkflowResult> =>
  bullmqPeer(async (peer) => {
    // The warm-up every contender gets.
    await peer.batch(warmup(), "warmup-", undefined, 60_000)
    const { seconds, latencies } = await peer.batch(count, "w", rate)
    return rate === undefined ? { perSecond: count / seconds } : latencies
  })
