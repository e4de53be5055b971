/**
 * The operator console's side of the HTTP port: its static pages (`runtime/console/`, committed
 * plain HTML, CSS and ES modules; no build), served without a token at `/console/` (`/` redirects
 * there), and the endpoints behind it: the flows API (Flows.ts), a live stream of published events
 * (server-sent events), and the resubmission of `processing-failed` rejections.
 */
import { readFileSync } from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import { Conflict, NotFound, Sensitive, type Envelope } from "@baton/core"
import type { Inbox, Store } from "@baton/store"
import type { Tools } from "./Http.ts"
import { HttpError, jsonBody } from "./Http.ts"
import { BadQuery, resubmissionOf, type Flows, type Tap } from "./Flows.ts"

/** The console's files, next to `src/`. */
export const assetsDir = new URL("../console/", import.meta.url)

const types: Record<string, string> = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml" }

/** Serves `/console/<file>` (flat names only) and redirects `/` and `/console` to `/console/`. */
export const pages = (dir: URL = assetsDir) => {
  const cache = new Map<string, Buffer>()
  return (req: IncomingMessage, res: ServerResponse, url: URL): boolean => {
    if (req.method !== "GET" && req.method !== "HEAD") return false
    if (url.pathname === "/" || url.pathname === "/console") {
      res.writeHead(302, { location: "/console/" })
      res.end()
      return true
    }
    const file = /^\/console\/([^/]*)$/.exec(url.pathname)
    if (file === null) return false
    const name = file[1] === "" ? "index.html" : file[1]!
    const ext = name.split(".").pop() ?? ""
    let body = cache.get(name)
    // Flat names of the console's kinds of file only (no path, no dot files): anything else is no file of it.
    if (body === undefined && !/^[a-z0-9-]+\.(html|js|css|svg)$/.test(name)) {
      res.writeHead(404, { "content-type": "text/plain" })
      res.end(`no console file ${name}`)
      return true
    }
    if (body === undefined) {
      try {
        body = readFileSync(new URL(name, dir))
      } catch {
        res.writeHead(404, { "content-type": "text/plain" })
        res.end(`no console file ${name}`)
        return true
      }
      cache.set(name, body)
    }
    res.writeHead(200, { "content-type": types[ext] ?? "application/octet-stream", "cache-control": "no-cache", "x-content-type-options": "nosniff" })
    res.end(req.method === "HEAD" ? undefined : body)
    return true
  }
}

export interface Resubmitted {
  readonly rejection: string
  readonly processor: string
  readonly failedId: string
  readonly resubmittedId: string
  readonly corrected: boolean
}

const badQuery = <A>(f: () => Promise<A>): Promise<A> =>
  f().catch((error: unknown) => {
    throw error instanceof BadQuery ? new HttpError(400, error.message) : error
  })

/** The console's endpoints; answers true when the request was one of them. */
export const endpoints = (deps: {
  readonly flows: Flows
  readonly tap: Tap
  /** Resubmits a processing-failed rejection's message to its processor, its data replaced when given. */
  readonly resubmit: (id: string, data: unknown) => Promise<Resubmitted>
  /** Seconds between keep-alive comments on the stream. */
  readonly heartbeatMs?: number
}) =>
  async (req: IncomingMessage, res: ServerResponse, url: URL, tools: Tools): Promise<boolean> => {
    const method = req.method ?? "GET"
    const flow = /^\/flows(?:\/([^/]+))?$/.exec(url.pathname)
    if (flow !== null) {
      if (method !== "GET") return false
      if (!tools.allowed("read", "read flows")) return true
      const id = flow[1] === undefined ? undefined : decodeURIComponent(flow[1])
      const answer =
        id === undefined ? await badQuery(() => deps.flows.search(url.searchParams)) : id === "stuck" ? await badQuery(() => deps.flows.stuck(url.searchParams)) : await deps.flows.flow(id)
      tools.json(200, tools.mask(answer))
      return true
    }
    if (url.pathname === "/events/stream") {
      if (method !== "GET") return false
      if (!tools.allowed("read", "read the event stream")) return true
      stream(req, res, url, tools, deps)
      return true
    }
    const rejection = /^\/errors\/([^/]+)\/resubmit$/.exec(url.pathname)
    if (rejection !== null) {
      if (method !== "POST") return false
      if (!tools.allowed("operate", "resubmit rejected messages")) return true
      const id = decodeURIComponent(rejection[1]!)
      await tools.operate("rejection-resubmit", id, async (note) => {
        const body = await jsonBody(req)
        note({ detail: { corrected: body !== undefined, ...(body === undefined ? {} : { payload: tools.mask(body) }) } })
        return deps.resubmit(id, body)
      })
      return true
    }
    return false
  }

/** `?correlationId=&type=`: each envelope the relay publishes from now on, as an `envelope` event (masked). */
const stream = (req: IncomingMessage, res: ServerResponse, url: URL, tools: Tools, deps: { readonly tap: Tap; readonly heartbeatMs?: number }) => {
  const correlationId = url.searchParams.get("correlationId") || undefined
  const type = url.searchParams.get("type") || undefined
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" })
  res.write(": baton event stream\n\n")
  const send = (topic: string, e: Envelope.Envelope) => {
    if ((correlationId !== undefined && e.correlationId !== correlationId) || (type !== undefined && e.type !== type)) return
    const view = tools.mask({ topic, id: e.id, type: e.type, key: e.key, correlationId: e.correlationId, causationId: e.causationId, occurredAt: e.occurredAt, data: e.data })
    res.write(`event: envelope\ndata: ${Sensitive.json(view)}\n\n`)
  }
  const stop = deps.tap.listen(send)
  const beat = setInterval(() => res.write(": keep-alive\n\n"), deps.heartbeatMs ?? 15_000)
  beat.unref()
  const close = () => {
    stop()
    clearInterval(beat)
  }
  req.once("close", close)
  res.once("close", close)
}

/**
 * Resubmits the message a processor failed on (a `processing-failed` rejection) to that processor
 * only, as a new message: a new envelope id (`<rejection id>/resubmitted`, so that a rejection is
 * resubmitted once), `causationId` the failed message, its data replaced when `data` is given. The
 * failed message is read from its inbox row (unmasked), or from the rejection while it is kept.
 */
export const resubmitter = (deps: {
  readonly store: Store
  readonly inbox: Inbox.Inbox
  readonly flows: Flows
  readonly consumer: (processor: string) => { readonly schedule: (event: Envelope.Envelope, topic: string, payload: string) => unknown } | undefined
}) => {
  const failedRow = deps.store.query("SELECT topic, payload FROM inbox WHERE processor = ? AND envelope_id = ?")
  return async (id: string, data: unknown): Promise<Resubmitted> => {
    const rejection = await deps.flows.rejection(id)
    if (rejection === undefined) throw new NotFound(`no rejection ${id}`)
    const { processor, envelopeId } = rejection
    if (!rejection.resubmittable || processor === undefined || envelopeId === undefined)
      throw new Conflict(`rejection ${id} is ${rejection.kind}: only processing-failed rejections (a processor failed on a valid message) can be resubmitted`)
    const consumer = deps.consumer(processor)
    if (consumer === undefined) throw new Conflict(`processor ${processor} of rejection ${id} does not run here`)
    const row = await deps.store.run(failedRow.get(processor, envelopeId))
    const kept = row === undefined || String(row.payload) === "" ? rejection.body.payload : String(row.payload)
    let failed: Envelope.Envelope
    try {
      failed = JSON.parse(kept) as Envelope.Envelope
    } catch {
      throw new Conflict(`the message of rejection ${id} is no longer kept whole (pruned, or cut at ${rejection.body.payloadBytes} bytes)`)
    }
    const message: Envelope.Envelope = {
      ...failed,
      id: resubmissionOf(id),
      causationId: failed.id,
      occurredAt: new Date().toISOString(),
      data: data === undefined ? failed.data : data
    }
    const topic = row === undefined ? rejection.topic : String(row.topic)
    const payload = JSON.stringify(message)
    const fresh = await deps.store.transaction(deps.inbox.receive(processor, { envelopeId: message.id, topic, key: message.key, payload }))
    if (!fresh) throw new Conflict(`rejection ${id} was resubmitted already, as ${message.id}`)
    consumer.schedule(message, topic, payload)
    return { rejection: id, processor, failedId: failed.id, resubmittedId: message.id, corrected: data !== undefined }
  }
}
