/** The HTTP port: health for orchestrators, and the record of rejections for operators. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import type { AddressInfo } from "node:net"
import { Conflict, Log, NotFound, PortInUseError, Sensitive, type HttpRoute } from "@baton/core"
import type { Rejections } from "@baton/store"
import type { Machine } from "@baton/mediator"
import type { Parking, WorkflowProcessor } from "@baton/repair"

export type Phase = "starting" | "ready" | "stopping"

/** The mediator's workflows, when the mediator topology runs. */
export interface Workflows {
  readonly list: (filter: { readonly status?: string; readonly domain?: string; readonly limit?: number }) => Promise<ReadonlyArray<Machine.State>>
  readonly get: (id: string) => Promise<Machine.State | undefined>
  readonly restart: (id: string, patch: Readonly<Record<string, unknown>> | undefined) => Promise<Machine.State | undefined>
}

/** What an operator sees of a workflow (masked by the runtime): commands in the order they were sent. */
export const workflowView = (s: Machine.State) => ({
  id: s.id,
  workflow: s.workflow,
  domain: s.domain,
  status: s.status,
  track: s.track,
  step: s.step + 1,
  ...(s.failure === undefined ? {} : { failure: s.failure }),
  startedAt: s.startedAt,
  updatedAt: s.updatedAt,
  commands: Object.values(s.commands).map(({ key, name, channel, step, track, status, attempts, generation, sentAt, ackedAt, failedAt, error }) => ({
    key, name, channel, track, step: step + 1, status, attempts, generation, sentAt, ackedAt, failedAt, error
  })),
  input: s.data.input
})

export class HttpError extends Error {
  override readonly name = "HttpError"
  readonly status: number
  constructor(status: number, reason: string) {
    super(reason)
    this.status = status
  }
}

const maxBodyBytes = 256 * 1024

/** The request body as a JSON object; an empty body is `undefined`. */
export const jsonBody = async (req: IncomingMessage): Promise<Record<string, unknown> | undefined> => {
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > maxBodyBytes) throw new HttpError(413, `request body over ${maxBodyBytes} bytes`)
    chunks.push(chunk as Buffer)
  }
  const text = Buffer.concat(chunks).toString("utf8").trim()
  if (text === "") return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new HttpError(400, `the body is not JSON: ${Log.reason(error)}`)
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new HttpError(400, "the body must be a JSON object")
  return value as Record<string, unknown>
}

/** The workflow event pattern's dashboard, when a processor parks failed keys. */
export interface Dashboard {
  readonly entries: Pick<WorkflowProcessor.WorkflowProcessor, "list" | "resubmit" | "discard">
  readonly held: () => Promise<ReadonlyArray<Parking.Held>>
}

const entryStatuses = ["open", "repaired", "resubmitted", "discarded", "all"] as const

export interface Status {
  readonly phase: () => Phase
  readonly detail: () => Promise<Record<string, unknown>>
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  // No answer carries a card number, not even an error that echoes the request.
  res.end(Sensitive.text(JSON.stringify(body)))
}

/** An operator's request that failed: 4xx with the reason, or a 500 for the unexpected. */
const failed = (res: ServerResponse, error: unknown) => {
  if (error instanceof HttpError) return json(res, error.status, { error: error.status === 413 ? "payload too large" : "bad request", reason: error.message })
  if (error instanceof NotFound) return json(res, 404, { error: "not found", reason: error.message })
  if (error instanceof Conflict) return json(res, 409, { error: "conflict", reason: error.message })
  throw error
}

const notAllowed = (res: ServerResponse, req: IncomingMessage, url: URL) =>
  json(res, 405, { error: "method not allowed", reason: `${req.method} is not supported on ${url.pathname}` })

export const start = (options: {
  readonly host: string
  readonly port: number
  readonly status: Status
  readonly rejections: Rejections.Log
  readonly security?: () => Record<string, number>
  /** With authentication on: resolves the user of a bearer token, or undefined. */
  readonly authorize?: (token: string) => Promise<string | undefined>
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer }
  readonly workflows?: Workflows
  readonly dashboard?: Dashboard
  /** The cluster's instances, their partitions and workflows; undefined for a single instance. */
  readonly cluster?: () => Promise<unknown>
  /** The apps' own endpoints, by `METHOD /path`. */
  readonly routes?: Readonly<Record<string, HttpRoute>>
}) =>
  new Promise<{ readonly port: number; readonly close: () => Promise<void> }>((resolve, reject) => {
    const route = async (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? "/", "http://localhost")
      if (url.pathname === "/healthz") {
        if (req.method !== "GET") return notAllowed(res, req, url)
        // With --expose-gc (benchmarks), `?gc=1` collects first, so that memory figures mean something.
        if (url.searchParams.get("gc") === "1") (globalThis as { gc?: () => void }).gc?.()
        const phase = options.status.phase()
        return json(res, phase === "ready" ? 200 : 503, { status: phase, ...(await options.status.detail()) })
      }
      if (options.authorize !== undefined) {
        const header = req.headers.authorization ?? ""
        const token = header.startsWith("Bearer ") ? header.slice(7).trim() : undefined
        const challenge = { "www-authenticate": 'Bearer realm="baton"' }
        if (token === undefined) return json(res, 401, { error: "unauthorized", reason: "this endpoint needs an Authorization: Bearer <token> header (create one with 'pnpm baton token add')" }, challenge)
        if ((await options.authorize(token)) === undefined) return json(res, 401, { error: "unauthorized", reason: "unknown or wrong bearer token" }, challenge)
      }
      const route = `${req.method ?? "GET"} ${url.pathname}`
      if (url.pathname === "/cluster") {
        if (req.method !== "GET") return notAllowed(res, req, url)
        const view = await options.cluster?.()
        if (view === undefined) return json(res, 404, { error: "not found", reason: "this instance runs alone on its embedded store; a cluster shares BATON_DATABASE_URL" })
        return json(res, 200, view)
      }
      const workflow = /^\/workflows\/([^/]+)(\/restart)?$/.exec(url.pathname)
      if (url.pathname === "/workflows" || workflow !== null) {
        const workflows = options.workflows
        if (workflows === undefined) return json(res, 404, { error: "not found", reason: "workflows run in the mediator topology only (BATON_TOPOLOGY=mediator)" })
        const id = decodeURIComponent(workflow?.[1] ?? "")
        if (route === "GET /workflows") {
          const status = url.searchParams.get("status") ?? undefined
          const domain = url.searchParams.get("domain") ?? undefined
          const limit = Math.min(10_000, Math.max(1, Number(url.searchParams.get("limit") ?? 100) || 100))
          const list = await workflows.list({ ...(status === undefined ? {} : { status }), ...(domain === undefined ? {} : { domain }), limit })
          return json(res, 200, { workflows: list.map(workflowView) })
        }
        if (req.method === "GET" && workflow?.[2] === undefined) {
          const state = await workflows.get(id)
          if (state === undefined) return json(res, 404, { error: "not found", reason: `no workflow ${id} (finished workflows are deleted once their outcome is announced on events/workflow-completed)` })
          return json(res, 200, workflowView(state))
        }
        if (req.method === "POST" && workflow?.[2] !== undefined) {
          try {
            const patch = await jsonBody(req)
            const state = await workflows.restart(id, patch)
            return json(res, 200, state === undefined ? { id, status: "completed" } : workflowView(state))
          } catch (error) {
            return failed(res, error)
          }
        }
        return notAllowed(res, req, url)
      }
      const own = options.routes?.[route]
      if (own !== undefined) {
        try {
          const answer = await own(await jsonBody(req))
          return json(res, answer.status, answer.body)
        } catch (error) {
          return failed(res, error)
        }
      }
      const entry = /^\/dashboard\/([^/]+)\/(resubmit|discard)$/.exec(url.pathname)
      if (url.pathname === "/dashboard" || entry !== null) {
        const dashboard = options.dashboard
        if (dashboard === undefined) return json(res, 404, { error: "not found", reason: "no processor of the running apps parks failed messages (try BATON_APP=trading)" })
        if (route === "GET /dashboard") {
          const status = url.searchParams.get("status") ?? "open"
          if (!(entryStatuses as ReadonlyArray<string>).includes(status)) return json(res, 400, { error: "bad request", reason: `status must be one of ${entryStatuses.join(", ")}` })
          const limit = Math.min(10_000, Math.max(1, Number(url.searchParams.get("limit") ?? 100) || 100))
          return json(res, 200, { entries: await dashboard.entries.list(status as (typeof entryStatuses)[number], limit), held: await dashboard.held() })
        }
        if (req.method !== "POST" || entry === null) return notAllowed(res, req, url)
        const id = decodeURIComponent(entry[1] ?? "")
        try {
          const body = await jsonBody(req)
          if (entry[2] === "resubmit") return json(res, 200, await dashboard.entries.resubmit(id, body))
          const reason = body?.reason
          if (typeof reason !== "string" || reason.trim() === "") throw new HttpError(400, 'discarding needs a reason: {"reason": "..."}')
          return json(res, 200, await dashboard.entries.discard(id, reason))
        } catch (error) {
          return failed(res, error)
        }
      }
      if (req.method !== "GET") return notAllowed(res, req, url)
      switch (url.pathname) {
        case "/errors": {
          const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get("limit") ?? 100) || 100))
          return json(res, 200, { counts: await options.rejections.counts(), security: options.security?.() ?? {}, recent: await options.rejections.recent(limit) })
        }
        default:
          return json(res, 404, { error: "not found", reason: `no endpoint at ${url.pathname}; try /healthz or /errors` })
      }
    }
    const handler = (req: IncomingMessage, res: ServerResponse) =>
      void route(req, res).catch((error: unknown) => json(res, 500, { error: "internal error", reason: Log.reason(error) }))
    const server: Server = options.tls === undefined ? createServer(handler) : createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler)
    server.keepAliveTimeout = 1000
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? new PortInUseError("HTTP", options.host, options.port) : error)
    )
    server.listen(options.port, options.host, () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
          })
      })
    )
  })
