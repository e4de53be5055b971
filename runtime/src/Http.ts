/** The HTTP port: health for orchestrators, and the record of rejections for operators. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import type { AddressInfo } from "node:net"
import { Log, PortInUseError } from "@baton/core"
import type { Rejections } from "@baton/store"

export type Phase = "starting" | "ready" | "stopping"

export interface Status {
  readonly phase: () => Phase
  readonly detail: () => Record<string, unknown>
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

export const start = (options: {
  readonly host: string
  readonly port: number
  readonly status: Status
  readonly rejections: Rejections.Log
  readonly security?: () => Record<string, number>
  /** With authentication on: resolves the user of a bearer token, or undefined. */
  readonly authorize?: (token: string) => Promise<string | undefined>
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer }
}) =>
  new Promise<{ readonly port: number; readonly close: () => Promise<void> }>((resolve, reject) => {
    const route = async (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? "/", "http://localhost")
      if (req.method !== "GET") return json(res, 405, { error: "method not allowed", reason: `${req.method} is not supported on ${url.pathname}` })
      if (url.pathname === "/healthz") {
        const phase = options.status.phase()
        return json(res, phase === "ready" ? 200 : 503, { status: phase, ...options.status.detail() })
      }
      if (options.authorize !== undefined) {
        const header = req.headers.authorization ?? ""
        const token = header.startsWith("Bearer ") ? header.slice(7).trim() : undefined
        const challenge = { "www-authenticate": 'Bearer realm="baton"' }
        if (token === undefined) return json(res, 401, { error: "unauthorized", reason: "this endpoint needs an Authorization: Bearer <token> header (create one with 'pnpm baton token add')" }, challenge)
        if ((await options.authorize(token)) === undefined) return json(res, 401, { error: "unauthorized", reason: "unknown or wrong bearer token" }, challenge)
      }
      switch (url.pathname) {
        case "/errors": {
          const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get("limit") ?? 100) || 100))
          return json(res, 200, { counts: options.rejections.counts(), security: options.security?.() ?? {}, recent: options.rejections.recent(limit) })
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
