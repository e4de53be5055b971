/**
 * The front thread (`BATON_FRONT=thread`, docs/front-thread.md): the embedded Aedes broker behind
 * the security guard, and the front's ingress log, on a worker thread of their own, so that an
 * initiating event's PUBACK waits for its own group commit and not for the main event loop.
 *
 * An initiating event is committed to `front/ingress.db` before its PUBACK (`beforeAck`), then
 * announced (`accepted`); main reads it from the file above its mark and forwards it (Ingress.ts's
 * `frontSource`). Past `backlog` entries committed and not yet forwarded, new initiating events
 * wait before their append (and so their PUBACKs, and Aedes' reading of their clients' sockets)
 * until the backlog is below half. The relay's publishes come in order and go into Aedes one at a
 * time, in that order; after a failure, the rest of that epoch is refused unpublished, so nothing
 * newer goes before what failed. A filter new to main's mirror is announced before its SUBACK,
 * which waits for main's `known`.
 */
import { parentPort, workerData } from "node:worker_threads"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { IdleSpin, Log, PortInUseError, Topics } from "@baton/core"
import { FrontLog } from "@baton/store"
import * as Crash from "../Crash.ts"
import * as Security from "../Security.ts"
import type { FromFront, Start, ToFront } from "./Protocol.ts"

const port = parentPort
if (port === null) throw new Error("front/Worker.ts runs as a worker thread (front/Front.ts starts it)")
const start = workerData as Start
const post = (message: FromFront) => port.postMessage(message)

const logger: Log.Logger = {
  threshold: start.logLevel,
  log: (level, event, fields) => {
    if (Log.enabled(logger, level)) post({ t: "log", level, event, fields })
  }
}

let users = start.users
/** Its loop polls a moment after it publishes a reply, for the requester's next request (`BATON_IDLE_SPIN_US`). */
const spin = IdleSpin.make({ windowUs: start.idleSpinUs })
const security = Security.make({ users: () => users, logger, limits: start.limits })

/** Entries appended or being appended (the log's newest `seq` once they commit), and main's mark. */
let taken = 0
let forwarded = start.mark
/** While the backlog is full: resolved once main forwarded it below half. */
let room: PromiseWithResolvers<void> | undefined
let committed = 0
/** Lets the waiting accepts on once the backlog is below half (main forwarded, or appends failed). */
const wake = () => {
  if (room === undefined || taken - forwarded > start.backlog / 2) return
  logger.log("debug", "front backlog below half: initiating events accepted again", { backlog: taken - forwarded })
  room.resolve()
  room = undefined
}
let announced = false
const announce = () => {
  if (announced) return
  announced = true
  queueMicrotask(() => {
    announced = false
    post({ t: "accepted", upTo: committed })
  })
}

const main = async () => {
  const front = await FrontLog.open({
    path: start.path,
    synchronous: start.durable ? "NORMAL" : "OFF",
    maxBytes: start.limits.maxPayloadBytes,
    previewBytes: start.previewBytes,
    beforeCommit: () => Crash.point("ingress-before-commit"),
    onCheckpointError: (message) => logger.log("warn", "WAL checkpoint failed (the next one tries again)", { file: start.path, reason: message })
  })
  taken = committed = await front.newest()

  // Accepts between their start and their commit (or failure): the log closes after them.
  let accepting = 0
  let accepted: PromiseWithResolvers<void> | undefined
  /** When "front backlog full" was last logged: at most once a second. */
  let fullLogged = 0
  const accept = async (topic: string, payload: Buffer, clientId: string): Promise<void> => {
    accepting++
    try {
      // The waiting ones are not counted in `taken` (they would keep the backlog above half for
      // good); woken in the order they waited, each takes its place or waits again.
      while (room !== undefined || taken - forwarded >= start.backlog) {
        if (room === undefined) {
          room = Promise.withResolvers()
          if (Date.now() - fullLogged >= 1_000) {
            fullLogged = Date.now()
            logger.log("warn", "front backlog full: initiating events wait for main to forward", { backlog: taken - forwarded, bound: start.backlog })
          }
        }
        await room.promise
      }
      taken++
      try {
        await front.append(topic, payload, clientId)
      } catch (error) {
        // Its place freed: nothing may come from main to wake the ones waiting (nothing new committed).
        taken--
        wake()
        throw error
      }
    } finally {
      if (--accepting === 0) accepted?.resolve()
    }
    Crash.point("ingress-committed")
    committed++
    announce()
  }

  // Filters announced to main, by id, until it says it knows them.
  let filterIds = 0
  const unknown = new Map<number, () => void>()

  const broker = await EmbeddedBroker.start({
    host: start.host,
    mqttPort: start.mqttPort,
    ...(start.wsPort === undefined ? {} : { wsPort: start.wsPort }),
    sessions: start.sessions,
    guard: security.guard,
    drainTimeoutMs: start.drainTimeoutMs,
    ...(start.tls === undefined ? {} : { tls: { cert: Buffer.from(start.tls.cert), key: Buffer.from(start.tls.key) } }),
    // Synchronous send means stored: PUBACK/PUBREC only after the front log's commit.
    beforeAck: (clientId, topic, payload) => (Topics.initiatingName(topic) === undefined ? undefined : accept(topic, payload, clientId)),
    onActivity: spin.seen,
    filters: {
      added: (filter, persistent) => {
        const id = ++filterIds
        post({ t: "filter", op: "add", id, filter, persistent })
        return new Promise<void>((resolve) => unknown.set(id, resolve))
      },
      dropped: (filter) => post({ t: "filter", op: "drop", filter })
    },
    logger
  })

  // The relay's publishes, one at a time in arrival order; `failed`: the epoch of the last failure.
  let failed = -1
  let publishing: Promise<void> = Promise.resolve()
  const publish = async (m: Extract<ToFront, { t: "publish" }>) => {
    const last = m.first + m.items.length - 1
    // Those before `i` were published: confirmed as such (main would publish them again).
    const fail = (i: number, reason: string) => {
      if (i > 0) post({ t: "published", upTo: m.first + i - 1 })
      post({ t: "publishFailed", from: m.first + i, to: last, reason })
    }
    for (let i = 0; i < m.items.length; i++) {
      if (m.epoch <= failed) return fail(i, "an earlier publish failed")
      const item = m.items[i]!
      try {
        await broker.publish(item.topic, typeof item.payload === "string" ? item.payload : Buffer.from(item.payload.buffer, item.payload.byteOffset, item.payload.byteLength), item.qos)
      } catch (error) {
        failed = m.epoch
        return fail(i, Log.reason(error))
      }
    }
    post({ t: "published", upTo: last })
  }

  let closing: Promise<void> | undefined
  port.on("message", (m: ToFront) => {
    switch (m.t) {
      case "publish":
        // A reply among them: its requester is likely to ask again at once (IdleSpin.ts).
        if (m.items.some((item) => Topics.isReply(item.topic))) spin.touch()
        publishing = publishing.then(() => publish(m))
        return
      case "known":
        unknown.get(m.id)?.()
        unknown.delete(m.id)
        return
      case "forwarded":
        if (m.upTo > forwarded) forwarded = m.upTo
        return wake()
      case "users":
        users = m.file
        return
      case "stats":
        return post({ t: "stats", id: m.id, connections: broker.connections(), counts: security.counts(), backlog: taken - forwarded })
      case "subscriptions":
        return post({ t: "subscriptions", id: m.id, filters: broker.subscriptions(m.clientId) })
      case "close":
        spin.stop()
        closing ??= (async () => {
          // Aedes first (sessions stored, no new publish), then what is being appended commits
          // (an accept held by a full backlog is refused: its client is gone and resends).
          await broker.close()
          await publishing
          room?.reject(new Error("the front thread is closing"))
          if (accepting > 0) await (accepted = Promise.withResolvers()).promise
          await front.close()
          post({ t: "closed" })
          port.close()
        })()
        return
    }
  })
  post({ t: "ready", mqttPort: broker.mqttPort, wsPort: broker.wsPort, persistentFilters: broker.persistentFilters })
}

main().catch((error: unknown) => {
  // A port taken crosses as such: main says which variable to set (Serve.ts).
  const inUse = error instanceof PortInUseError ? { listener: error.listener, host: error.host, port: error.port } : undefined
  post({ t: "failed", reason: Log.reason(error), ...(inUse === undefined ? {} : { inUse }) })
  port.close()
})
