/**
 * The HTTP port: health for orchestrators, the record (rejections, workflows, dashboard, cluster,
 * operations) for observers, and the actions that resolve failures for operators. With a users
 * file every request but `/healthz` names its user by a bearer token, and the user's roles decide
 * (Acl.httpRoles); every operator action is logged in one line and recorded with its user.
 */
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import type { AddressInfo } from "node:net"
import { Acl } from "@baton/auth"
import { Conflict, Log, NotFound, PortInUseError, Sensitive, type HttpRoute } from "@baton/core"
import { Page, type Operations, type Rejections } from "@baton/store"
import type { Machine } from "@baton/mediator"
import type { Parking, WorkflowProcessor } from "@baton/repair"
import * as OpenApi from "./OpenApi.ts"

export type Phase = "starting" | "ready" | "stopping"

/** The mediator's workflows, when the mediator topology runs. */
export interface Workflows {
  readonly page: (filter: { readonly status?: string; readonly domain?: string }, req: Page.Request) => Promise<Page.Page<Machine.State>>
  readonly get: (id: string) => Promise<Machine.State | undefined>
  readonly restart: (id: string, patch: Readonly<Record<string, unknown>> | undefined) => Promise<Machine.State | undefined>
  readonly discard: (id: string, reason: string, by: string) => Promise<Machine.State>
}

/** Who sends a request, and with which roles. */
export interface Principal {
  readonly user: string
  readonly roles: ReadonlyArray<Acl.Role>
}

/** Without a users file: a local user (the listener is on loopback) who may do everything. */
export const anonymous: Principal = { user: "anonymous", roles: Acl.allRoles }

/** What an operator sees of a workflow (masked by the runtime): commands in the order they were sent. */
export const workflowView = (s: Machine.State) => ({
  id: s.id,
  workflow: s.workflow,
  domain: s.domain,
  status: s.status,
  track: s.track,
  step: s.step + 1,
  ...(s.failure === undefined ? {} : { failure: s.failure }),
  ...(s.discarded === undefined ? {} : { discarded: s.discarded }),
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
  readonly entries: Pick<WorkflowProcessor.WorkflowProcessor, "page" | "resubmit" | "discard">
  readonly held: () => Promise<ReadonlyArray<Parking.Held>>
}

const entryStatuses = ["open", "repaired", "resubmitted", "discarded", "all"] as const

export interface Status {
  readonly phase: () => Phase
  /** `statements`: with the statements sent per statement text (`/healthz?statements=1`). */
  readonly detail: (options?: { readonly statements?: boolean }) => Promise<Record<string, unknown>>
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  // No answer carries a card number, not even an error that echoes the request.
  res.end(Sensitive.json(body))
}

/** The 4xx answer to a request that failed for a reason the caller can fix; the unexpected is rethrown (a 500). */
const refusal = (error: unknown): { readonly status: number; readonly body: { readonly error: string; readonly reason: string } } => {
  if (error instanceof HttpError) return { status: error.status, body: { error: error.status === 413 ? "payload too large" : "bad request", reason: error.message } }
  if (error instanceof Page.BadCursor) return { status: 400, body: { error: "bad request", reason: error.message } }
  if (error instanceof NotFound) return { status: 404, body: { error: "not found", reason: error.message } }
  if (error instanceof Conflict) return { status: 409, body: { error: "conflict", reason: error.message } }
  throw error
}

const failed = (res: ServerResponse, error: unknown) => {
  const { status, body } = refusal(error)
  json(res, status, body)
}

/** `{"reason": "..."}`, required to discard anything. */
const reasonOf = (body: Readonly<Record<string, unknown>> | undefined, what: string): string => {
  const reason = body?.reason
  if (typeof reason !== "string" || reason.trim() === "") throw new HttpError(400, `discarding ${what} needs a reason: {"reason": "..."}`)
  return reason.trim()
}

/** Work lists (dashboard, workflows) show the oldest first: it has waited longest; logs (errors, operations) the newest. */
const pageOf = (url: URL, order: Page.Order, maxLimit: number) => Page.request(url.searchParams, { order, limit: 100, maxLimit })

const notAllowed = (res: ServerResponse, req: IncomingMessage, url: URL) =>
  json(res, 405, { error: "method not allowed", reason: `${req.method} is not supported on ${url.pathname}` })

/** What an extra endpoint gets: the caller, the role check, the recorded operator action, a JSON answer (card numbers masked). */
export interface Tools {
  readonly who: Principal
  /** True when the caller may; otherwise it has answered 403. */
  readonly allowed: (access: Acl.HttpAccess, what: string) => boolean
  readonly operate: (
    action: string,
    target: string,
    run: (note: (fields: { readonly reason?: string; readonly detail?: Readonly<Record<string, unknown>> }) => void) => Promise<unknown>
  ) => Promise<void>
  readonly json: (status: number, body: unknown) => void
  /** The apps' sensitive fields masked. */
  readonly mask: <A>(value: A) => A
}

export const start = (options: {
  readonly host: string
  readonly port: number
  readonly status: Status
  readonly rejections: Rejections.Log
  /** Where operator actions are recorded; without it they are only logged. */
  readonly operations?: Operations.Log
  readonly logger?: Log.Logger
  /** The broker's security refusals by kind, for `GET /errors` (asked across a thread when the broker runs in one). */
  readonly security?: () => Promise<Readonly<Record<string, number>>>
  /** The Prometheus text exposition, for `GET /metrics` (a read). */
  readonly metrics?: () => Promise<string>
  /** With authentication on: the user of a bearer token and its roles, or undefined. */
  readonly authorize?: (token: string) => Promise<Principal | undefined>
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer }
  readonly workflows?: Workflows
  readonly dashboard?: Dashboard
  /** The cluster's instances, their partitions and workflows; undefined for a single instance. */
  readonly cluster?: () => Promise<unknown>
  /** The apps' own endpoints, by `METHOD /path`. */
  readonly routes?: Readonly<Record<string, HttpRoute>>
  /** Masks what an operator sent before it is recorded: the apps' sensitive fields (card numbers in any text without it). */
  readonly mask?: Sensitive.Masker
  /** Public pages served without a token (the console's static files, Console.ts): true when one answered. */
  readonly pages?: (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>
  /** More endpoints (the flows API, Console.ts), tried after authentication, before the 404: true when one answered. */
  readonly extra?: (req: IncomingMessage, res: ServerResponse, url: URL, tools: Tools) => Promise<boolean>
  /**
   * Requests in progress at most (`BATON_HTTP_MAX_CONCURRENT`): one more is answered 503 with
   * `Retry-After: 1`, and counted (`http-busy-refused` in `/errors`). `/healthz` and `/metrics`
   * are exempt, so that operators see what is going on. Undefined: no bound.
   */
  readonly maxConcurrent?: number
  /** Called for each request refused at `maxConcurrent` (a Prometheus counter). */
  readonly onBusy?: () => void
}) =>
  new Promise<{ readonly port: number; readonly close: () => Promise<void> }>((resolve, reject) => {
    const logger = options.logger ?? Log.silent
    const mask = (options.mask ?? Sensitive.masker([])).json

    /** True when the principal may; otherwise answers 403 with what it would take, in one log line. */
    const allowed = (res: ServerResponse, who: Principal, access: Acl.HttpAccess, what: string): boolean => {
      if (Acl.mayHttp(who.roles, access)) return true
      const needs = Acl.httpRoles[access].join(" or ")
      logger.log("warn", "http refused", { user: who.user, roles: who.roles.join(","), action: what })
      json(res, 403, { error: "forbidden", reason: `user '${who.user}' (roles ${who.roles.join(",") || "none"}) may not ${what}: that needs the ${needs} role` })
      return false
    }

    /**
     * An operator action: runs it, answers, logs one line with the user, and records it (refusals
     * included: an unknown id, a conflict, a bad body, an unexpected failure).
     */
    const operate = async (
      res: ServerResponse,
      who: Principal,
      action: string,
      target: string,
      run: (note: (fields: { readonly reason?: string; readonly detail?: Readonly<Record<string, unknown>> }) => void) => Promise<unknown>
    ) => {
      let reason: string | undefined
      let detail: Readonly<Record<string, unknown>> = {}
      const note = (fields: { readonly reason?: string; readonly detail?: Readonly<Record<string, unknown>> }) => {
        reason = fields.reason ?? reason
        detail = { ...detail, ...fields.detail }
      }
      let answer: { readonly status: number; readonly body: unknown }
      try {
        answer = { status: 200, body: await run(note) }
      } catch (error) {
        try {
          answer = refusal(error)
        } catch {
          // Unexpected: still logged and recorded, since part of the action may have happened.
          answer = { status: 500, body: { error: "internal error", reason: Log.reason(error) } }
        }
        detail = { ...detail, refused: (answer.body as { reason: string }).reason }
      }
      const at = new Date()
      logger.log(answer.status === 200 ? "info" : "warn", "operator action", { user: who.user, action, target, status: answer.status, ...(reason === undefined ? {} : { reason }) })
      const recorded = await options.operations?.record(randomUUID(), at, { action, target, user: who.user, reason, status: answer.status, detail })
      json(res, answer.status, answer.status === 200 && recorded !== undefined ? { ...(answer.body as object), operation: recorded.id } : answer.body)
    }

    const route = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
      if (url.pathname === "/healthz") {
        if (req.method !== "GET") return notAllowed(res, req, url)
        // With --expose-gc (benchmarks), `?gc=1` collects first, so that memory figures mean something.
        if (url.searchParams.get("gc") === "1") (globalThis as { gc?: () => void }).gc?.()
        const phase = options.status.phase()
        return json(res, phase === "ready" ? 200 : 503, { status: phase, ...(await options.status.detail({ statements: url.searchParams.get("statements") === "1" })) })
      }
      // The API's description holds no data: like /healthz, it needs no token.
      if (url.pathname === "/openapi.json") {
        if (req.method !== "GET") return notAllowed(res, req, url)
        return json(res, 200, OpenApi.document(Object.keys(options.routes ?? {})))
      }
      if (options.pages !== undefined && (await options.pages(req, res, url))) return
      let who = anonymous
      if (options.authorize !== undefined) {
        const header = req.headers.authorization ?? ""
        const token = header.startsWith("Bearer ") ? header.slice(7).trim() : undefined
        const challenge = { "www-authenticate": 'Bearer realm="baton"' }
        if (token === undefined) return json(res, 401, { error: "unauthorized", reason: "this endpoint needs an Authorization: Bearer <token> header (create one with 'pnpm baton token add')" }, challenge)
        const principal = await options.authorize(token)
        if (principal === undefined) return json(res, 401, { error: "unauthorized", reason: "unknown or wrong bearer token (or its user was removed)" }, challenge)
        who = principal
      }
      const route = `${req.method ?? "GET"} ${url.pathname}`
      try {
        if (url.pathname === "/metrics" && options.metrics !== undefined) {
          if (req.method !== "GET") return notAllowed(res, req, url)
          if (!allowed(res, who, "read", "read the metrics")) return
          const text = await options.metrics()
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
          return void res.end(text)
        }
        if (url.pathname === "/cluster") {
          if (req.method !== "GET") return notAllowed(res, req, url)
          if (!allowed(res, who, "read", "read the cluster")) return
          const view = await options.cluster?.()
          if (view === undefined) return json(res, 404, { error: "not found", reason: "this instance runs alone on its embedded store; a cluster shares BATON_DATABASE_URL" })
          return json(res, 200, view)
        }
        const workflow = /^\/workflows\/([^/]+)(?:\/(restart|discard))?$/.exec(url.pathname)
        if (url.pathname === "/workflows" || workflow !== null) {
          const action = workflow?.[2]
          if (req.method !== (action === undefined ? "GET" : "POST")) return notAllowed(res, req, url)
          if (!allowed(res, who, action === undefined ? "read" : "operate", action === undefined ? "read workflows" : `${action} workflows`)) return
          const workflows = options.workflows
          if (workflows === undefined) return json(res, 404, { error: "not found", reason: "workflows run in the mediator topology only (BATON_TOPOLOGY=mediator)" })
          const id = decodeURIComponent(workflow?.[1] ?? "")
          if (workflow === null) {
            const status = url.searchParams.get("status") ?? undefined
            const domain = url.searchParams.get("domain") ?? undefined
            const page = await workflows.page({ ...(status === undefined ? {} : { status }), ...(domain === undefined ? {} : { domain }) }, pageOf(url, "asc", 10_000))
            return json(res, 200, { workflows: page.items.map(workflowView), next: page.next })
          }
          if (action === undefined) {
            const state = await workflows.get(id)
            if (state === undefined) return json(res, 404, { error: "not found", reason: `no workflow ${id} (finished workflows are deleted once their outcome is announced on events/workflow-completed)` })
            return json(res, 200, workflowView(state))
          }
          if (action === "restart")
            return operate(res, who, "workflow-restart", id, async (note) => {
              const patch = await jsonBody(req)
              note({ detail: { patched: patch === undefined ? [] : Object.keys(patch), patch: mask(patch) } })
              const state = await workflows.restart(id, patch)
              return state === undefined ? { id, status: "completed" } : workflowView(state)
            })
          return operate(res, who, "workflow-discard", id, async (note) => {
            const reason = reasonOf(await jsonBody(req), "a workflow")
            note({ reason })
            return workflowView(await workflows.discard(id, reason, who.user))
          })
        }
        const own = options.routes?.[route]
        if (own !== undefined) {
          if (!allowed(res, who, "submit", route)) return
          const answer = await own(await jsonBody(req))
          return json(res, answer.status, answer.body)
        }
        const entry = /^\/dashboard\/([^/]+)\/(resubmit|discard)$/.exec(url.pathname)
        if (url.pathname === "/dashboard" || entry !== null) {
          if (req.method !== (entry === null ? "GET" : "POST")) return notAllowed(res, req, url)
          if (!allowed(res, who, entry === null ? "read" : "operate", entry === null ? "read the dashboard" : `${entry[2]} dashboard entries`)) return
          const dashboard = options.dashboard
          if (dashboard === undefined) return json(res, 404, { error: "not found", reason: "no processor of the running apps parks failed messages (try BATON_APP=trading)" })
          if (entry === null) {
            const status = url.searchParams.get("status") ?? "open"
            if (!(entryStatuses as ReadonlyArray<string>).includes(status)) return json(res, 400, { error: "bad request", reason: `status must be one of ${entryStatuses.join(", ")}` })
            const page = await dashboard.entries.page(status as (typeof entryStatuses)[number], pageOf(url, "asc", 10_000))
            return json(res, 200, { entries: page.items, next: page.next, held: await dashboard.held() })
          }
          const id = decodeURIComponent(entry[1] ?? "")
          if (entry[2] === "resubmit")
            return operate(res, who, "dashboard-resubmit", id, async (note) => {
              const body = await jsonBody(req)
              note({ detail: { corrected: body !== undefined, ...(body === undefined ? {} : { payload: mask(body) }) } })
              return dashboard.entries.resubmit(id, body)
            })
          return operate(res, who, "dashboard-discard", id, async (note) => {
            const reason = reasonOf(await jsonBody(req), "a dashboard entry")
            note({ reason })
            return dashboard.entries.discard(id, reason)
          })
        }
        if (url.pathname === "/errors" || url.pathname === "/operations") {
          if (req.method !== "GET") return notAllowed(res, req, url)
          if (!allowed(res, who, "read", url.pathname === "/errors" ? "read rejections" : "read the operations log")) return
          if (url.pathname === "/errors") {
            const page = await options.rejections.page(pageOf(url, "desc", 1000))
            const security = { ...(await options.security?.()), ...(options.maxConcurrent === undefined ? {} : { "http-busy-refused": busyRefused }) }
            return json(res, 200, { counts: await options.rejections.counts(), security, recent: page.items, next: page.next })
          }
          const target = url.searchParams.get("target") ?? undefined
          const page = (await options.operations?.page(pageOf(url, "desc", 1000), target)) ?? { items: [], next: undefined }
          return json(res, 200, { operations: page.items, next: page.next })
        }
        const tools: Tools = {
          who,
          allowed: (access, what) => allowed(res, who, access, what),
          operate: (action, target, run) => operate(res, who, action, target, run),
          json: (status, body) => json(res, status, body),
          mask
        }
        if (options.extra !== undefined && (await options.extra(req, res, url, tools))) return
        if (req.method !== "GET") return notAllowed(res, req, url)
        return json(res, 404, { error: "not found", reason: `no endpoint at ${url.pathname}; try /healthz or /errors` })
      } catch (error) {
        return failed(res, error)
      }
    }
    // The bound on requests in progress: one is in progress until its route has answered (an event
    // stream, once it is set up). Health and metrics are exempt: they must answer at the bound.
    let inProgress = 0
    let busyRefused = 0
    let busyLogged = 0
    const exempt = new Set(["/healthz", "/metrics"])
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      let url: URL
      try {
        url = new URL(req.url ?? "/", "http://localhost")
      } catch (error) {
        return json(res, 500, { error: "internal error", reason: Log.reason(error) })
      }
      const bounded = options.maxConcurrent !== undefined && !exempt.has(url.pathname)
      if (bounded && inProgress >= options.maxConcurrent) {
        busyRefused++
        options.onBusy?.()
        // One line per second at most: a client that retries at once must not flood the log.
        const now = Date.now()
        if (now - busyLogged > 1000) {
          busyLogged = now
          logger.log("warn", "http busy, refusing requests", { inProgress, limit: options.maxConcurrent, refused: busyRefused })
        }
        return json(res, 503, { error: "service unavailable", reason: `${options.maxConcurrent} requests are in progress (BATON_HTTP_MAX_CONCURRENT): retry later` }, { "retry-after": "1" })
      }
      if (bounded) inProgress++
      void route(req, res, url)
        .catch((error: unknown) => json(res, 500, { error: "internal error", reason: Log.reason(error) }))
        .finally(() => {
          if (bounded) inProgress--
        })
    }
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
