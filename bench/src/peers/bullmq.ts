/**
 * The five-step order workflow with BullMQ flows on the local Redis (the peer of scenario 3): a
 * worker process for every stage, concurrency 20. Steps 2, 3 and 4 are parent jobs whose children
 * (the step's commands) run in parallel; each stage enqueues the next when it runs. BullMQ retries
 * failed jobs and keeps them in Redis; a stage can run twice after a crash (at-least-once).
 */
import { FlowProducer, Queue, Worker, type ConnectionOptions } from "bullmq"

const connection: ConnectionOptions = { host: "127.0.0.1", port: 6379, db: Number(process.env.REDIS_DB ?? 5), maxRetriesPerRequest: null }
const prefix = process.env.BULL_PREFIX ?? "bench"
const flow = new FlowProducer({ connection, prefix })
const last = new Queue("wf-step5", { connection, prefix })
const concurrency = 20
const opts = { removeOnComplete: true, removeOnFail: 1000 }

const step = (name: string, commands: ReadonlyArray<string>, data: unknown, id: string) =>
  flow.add({ name, queueName: `wf-${name}`, data, opts: { jobId: `${id}-${name}`, ...opts }, children: commands.map((c) => ({ name: c, queueName: "wf-command", data, opts: { jobId: `${id}-${name}-${c}`, ...opts } })) })

const workers = [
  new Worker("wf-create", async (job) => {
    const data = { ...(job.data as object), orderId: `ORD-${job.id}` }
    await step("step2", ["email-customer", "apply-payment", "adjust-inventory"], data, String(job.id))
    return data
  }, { connection, prefix, concurrency }),
  new Worker("wf-command", async (job) => ({ done: job.name }), { connection, prefix, concurrency }),
  new Worker("wf-step2", async (job) => void (await step("step3", ["fulfill-order", "order-stock"], job.data, String(job.id).replace(/-step2$/, ""))), { connection, prefix, concurrency }),
  new Worker("wf-step3", async (job) => void (await step("step4", ["ship-order", "email-customer"], job.data, String(job.id).replace(/-step3$/, ""))), { connection, prefix, concurrency }),
  new Worker("wf-step4", async (job) => void (await last.add("step5", job.data, { jobId: String(job.id).replace(/-step4$/, ""), ...opts })), { connection, prefix, concurrency }),
  new Worker("wf-step5", async () => ({ emailed: "shipped" }), { connection, prefix, concurrency })
]
await Promise.all(workers.map((w) => w.waitUntilReady()))
process.on("SIGTERM", () => void Promise.all([...workers.map((w) => w.close()), flow.close(), last.close()]).then(() => process.exit(0)))
console.log(`ready ${JSON.stringify({ pid: process.pid })}`)
