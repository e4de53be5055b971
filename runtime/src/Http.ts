/** The HTTP port: health for orchestrators, and the record of rejections for operators. */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { PortInUseError } from "@baton/core"
import type { Rejections } from "@baton/store"

export type Phase = "starting" | "ready" | "stopping"

export interface Status {
  readonly phase: () => Phase
  readonly detail: () => Record<string, unknown>
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
}

export const start = (options: { readonly host: string; readonly port: number; readonly status: Status; readonly rejections: Rejections.Log }) =>
  new Promise<{ readonly port: number; readonly close: () => Promise<void> }>((resolve, reject) => {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? "/", "http://localhost")
      if (req.method !== "GET") return json(res, 405, { error: "method not allowed", reason: `${req.method} is not supported on ${url.pathname}` })
      switch (url.pathname) {
        case "/healthz": {
          const phase = options.status.phase()
          return json(res, phase === "ready" ? 200 : 503, { status: phase, ...options.status.detail() })
        }
        case "/errors": {
          const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get("limit") ?? 100) || 100))
          return json(res, 200, { counts: options.rejections.counts(), recent: options.rejections.recent(limit) })
        }
        default:
          return json(res, 404, { error: "not found", reason: `no endpoint at ${url.pathname}; try /healthz or /errors` })
      }
    })
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
