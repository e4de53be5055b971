/**
 * The main thread's side of the front thread (`BATON_FRONT=thread`, docs/front-thread.md): starts
 * the worker (front/Worker.ts) and answers for the broker it runs, as the broker face the other
 * layers use (`layers/Broker.ts`'s `Face`).
 *
 * - `publish`: the relay's publishes, coalesced per microtask into one message, each resolved when
 *   the front confirms it (in order), rejected when it failed or was refused after a failure;
 * - `wanted`/`hasSubscribers`: from a mirror of the broker's filters (Mirror.ts), fed by the
 *   front's announcements; each is put in the mirror before the front hears `known` and lets its
 *   SUBACK go. Until the front is ready, and with sessions in Redis, "not known" (yes);
 * - `connections`/`counts`: asked across the port, 1 s at most, the last answer after that;
 * - the worker ending or failing while the runtime runs: `fatal` (the runtime stops, the
 *   supervisor restarts it, and the front's log is forwarded from main's mark).
 */
import { Worker } from "node:worker_threads"
import type { Users } from "@baton/auth"
import { Mirror } from "@baton/broker-aedes"
import { Log, PortInUseError, type Broker as Port } from "@baton/core"
import type { Face } from "../layers/Broker.ts"
import type { FromFront, PublishItem, Start, ToFront } from "./Protocol.ts"

/** How long a `stats` question waits before the last answer is used. */
const statsTimeoutMs = 1_000
/** How long `close` waits for the worker to end by itself before it is terminated. */
const closeTimeoutMs = 5_000

/** The broker face the layers use (`layers/Broker.ts`), with what main tells the front. */
export interface Front extends Face {
  /** Entries committed and not yet forwarded, as the front last counted them. */
  readonly backlog: () => Promise<number>
  /** Main committed its mark up to `upTo`. */
  readonly forwarded: (upTo: number) => void
  /** The users file reloaded on main. */
  readonly users: (file: Users.File) => void
  /** Closes the broker and the front's log, then ends the worker. */
  readonly close: () => Promise<void>
}

export const start = (options: {
  readonly start: Start
  readonly logger: Log.Logger
  /** Entries were committed in the front's log: drain it. */
  readonly accepted: () => void
  /** The worker failed or ended while the runtime ran. */
  readonly fatal: (error: Error) => void
  /** Main's loop had work from the front (any message): `IdleSpin.seen`. */
  readonly onActivity?: () => void
}): Promise<Front> => {
  const { logger } = options
  const worker = new Worker(new URL("./Worker.ts", import.meta.url), { workerData: options.start, name: "baton-front" })
  const send = (message: ToFront) => worker.postMessage(message)
  const ready = Promise.withResolvers<Front>()
  let started = false
  let closing = false
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve))

  // Publishes in flight, in id order, and the ones gathered this microtask.
  const inFlight: Array<{ readonly id: number; readonly resolve: () => void; readonly reject: (error: Error) => void }> = []
  let nextId = 1
  let epoch = 0
  let gathered: Array<PublishItem> | undefined
  let first = 0
  const flush = () => {
    const items = gathered!
    gathered = undefined
    send({ t: "publish", first, epoch, items })
  }
  const publish: Port["publish"] = (topic, payload, qos = 1) =>
    new Promise<void>((resolve, reject) => {
      const id = nextId++
      inFlight.push({ id, resolve, reject })
      if (gathered === undefined) {
        gathered = []
        first = id
        queueMicrotask(flush)
      }
      // A Buffer may be a slice of a shared pool: its bytes alone cross, copied.
      gathered.push({ topic, payload: typeof payload === "string" ? payload : Uint8Array.prototype.slice.call(payload), qos })
    })
  const settle = (upTo: number, error?: Error) => {
    while (inFlight.length > 0 && inFlight[0]!.id <= upTo) {
      const p = inFlight.shift()!
      if (error === undefined) p.resolve()
      else p.reject(error)
    }
  }

  // Filed from the first announcement on (a client may subscribe before `ready` reaches main);
  // asked only once `ready` added the sessions' persistent filters to it.
  const mirror = Mirror.make()
  let mirrored = false
  const redis = options.start.sessions.kind === "redis"
  const wanted = (topic: string): boolean | undefined => (!mirrored || redis ? undefined : mirror.wanted(topic))

  // Questions across the port, by id.
  let questionIds = 0
  const questions = new Map<number, (answer: FromFront) => void>()
  const ask = <A>(message: (id: number) => ToFront, read: (answer: FromFront) => A, fallback: () => A): Promise<A> => {
    const id = ++questionIds
    return new Promise<A>((resolve) => {
      const timer = setTimeout(() => {
        questions.delete(id)
        resolve(fallback())
      }, statsTimeoutMs)
      timer.unref()
      questions.set(id, (answer) => {
        clearTimeout(timer)
        resolve(read(answer))
      })
      send(message(id))
    })
  }
  let lastStats: Extract<FromFront, { t: "stats" }> = { t: "stats", id: 0, connections: 0, counts: {}, backlog: 0 }
  const stats = () =>
    ask(
      (id) => ({ t: "stats", id }),
      (answer) => (lastStats = answer as typeof lastStats),
      () => lastStats
    )

  const onActivity = options.onActivity
  worker.on("message", (m: FromFront) => {
    onActivity?.()
    switch (m.t) {
      case "accepted":
        return options.accepted()
      case "published":
        return settle(m.upTo)
      case "publishFailed":
        // Those posted before this answer were refused by the front: the next ones start an epoch.
        epoch++
        return settle(m.to, new Error(m.reason))
      case "filter":
        if (m.op === "drop") return mirror.dropped(m.filter)
        mirror.added(m.filter, m.persistent)
        return send({ t: "known", id: m.id })
      case "stats":
      case "subscriptions": {
        const answer = questions.get(m.id)
        questions.delete(m.id)
        return answer?.(m)
      }
      case "log":
        return logger.log(m.level, m.event, { ...m.fields, thread: "front" })
      case "ready":
        started = true
        for (const filter of m.persistentFilters) mirror.added(filter, true)
        mirrored = true
        return ready.resolve({
          host: options.start.host,
          mqttPort: m.mqttPort,
          wsPort: m.wsPort,
          publish,
          wanted,
          hasSubscribers: wanted,
          connections: async () => (await stats()).connections,
          counts: async () => (await stats()).counts,
          backlog: async () => (await stats()).backlog,
          subscriptions: (clientId) =>
            ask(
              (id) => ({ t: "subscriptions", id, clientId }),
              (answer) => (answer as Extract<FromFront, { t: "subscriptions" }>).filters,
              () => []
            ),
          forwarded: (upTo) => send({ t: "forwarded", upTo }),
          users: (file) => send({ t: "users", file }),
          close
        })
      case "failed":
        return ready.reject(m.inUse === undefined ? new Error(m.reason) : new PortInUseError(m.inUse.listener, m.inUse.host, m.inUse.port))
      case "closed":
        return
    }
  })
  let failed = false
  const ended = (error: Error) => {
    if (closing || failed) return
    failed = true
    for (const p of inFlight.splice(0)) p.reject(error)
    if (!started) return ready.reject(error)
    logger.log("error", "front thread failed", { reason: Log.reason(error) })
    options.fatal(error)
  }
  worker.on("error", ended)
  worker.on("exit", (code) => ended(new Error(`the front thread ended (exit code ${code})`)))

  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= (async () => {
      closing = true
      send({ t: "close" })
      const timer = setTimeout(() => void worker.terminate(), closeTimeoutMs)
      await exited
      clearTimeout(timer)
      for (const p of inFlight.splice(0)) p.reject(new Error("the front thread closed"))
    })()
    return closed
  }
  // A start that failed: the worker ends by itself (it closed its port).
  return ready.promise.catch(async (error: unknown) => {
    closing = true
    await Promise.race([exited, new Promise((r) => setTimeout(r, closeTimeoutMs).unref())])
    await worker.terminate()
    throw error
  })
}
