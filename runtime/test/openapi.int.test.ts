/**
 * The OpenAPI document against the router it describes, on a real runtime (mediator topology,
 * every app with an HTTP route): a method and path is answered by a route (anything but the
 * router's "no endpoint" 404 or a 405) exactly when the document has the operation. Checked for
 * every documented operation, for every path the router's source names with every method, and for
 * generated paths; so a route added without its documentation (or the reverse) fails here. And
 * the answers of a runtime with something in every list match the documented schemas (Ajv, JSON
 * Schema 2020-12, the dialect of OpenAPI 3.1).
 */
import { readdirSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { randomUUID } from "node:crypto"
import { Ajv2020 } from "ajv/dist/2020.js"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { useRuntime } from "./support.ts"
import { waitFor } from "./trading.ts"

const methods = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const

type Doc = { openapi: string; paths: Record<string, Record<string, { "x-baton-access": string; responses: Record<string, unknown> }>>; components: { schemas: Record<string, unknown> } }

/** `/workflows/{id}/restart` as a regular expression over concrete paths. */
const template = (path: string) => new RegExp(`^${path.replace(/[.]/g, "\\.").replace(/\{[^}]+\}/g, "[^/]+")}$`)

const documented = (doc: Doc, method: string, path: string): boolean =>
  Object.entries(doc.paths).some(([p, ops]) => template(p).test(path) && ops[method.toLowerCase()] !== undefined)

/**
 * The paths the runtime's sources test a request for (Http.ts's router, and any module that answers
 * requests beside it): `pathname === "/x"`, `startsWith("/x")` and regular expressions `/^\/x...`.
 * The CLI and this document only name paths, they answer none.
 */
const pathsInSource = (): ReadonlyArray<string> => {
  const dir = resolve(import.meta.dirname, "../src")
  const source = readdirSync(dir)
    .filter((f) => f.endsWith(".ts") && !["OpenApi.ts", "cli.ts"].includes(f))
    .map((f) => readFileSync(join(dir, f), "utf8"))
    .join("\n")
  const found = new Set<string>()
  for (const m of source.matchAll(/pathname\s*===\s*"(\/[^"]*)"/g)) found.add(m[1]!)
  for (const m of source.matchAll(/startsWith\("(\/[^"]*)"\)/g)) found.add(m[1]!)
  for (const m of source.matchAll(/\/\^\\\/([A-Za-z0-9_.-]+)/g)) found.add(`/${m[1]}`)
  return [...found]
}

describe("the OpenAPI document", () => {
  const ctx = useRuntime({ topology: "mediator", apps: ["order-entry", "customer", "trading", "comments"] })

  const document = async (): Promise<Doc> => {
    const res = await fetch(`http://127.0.0.1:${ctx.h.runtime.httpPort}/openapi.json`)
    expect(res.status).toBe(200)
    return (await res.json()) as Doc
  }

  /** Whether a route answered: the router's fallthrough is a 404 "no endpoint at …" or a 405. */
  const answered = async (method: string, path: string): Promise<{ readonly answered: boolean; readonly status: number }> => {
    const res = await fetch(`http://127.0.0.1:${ctx.h.runtime.httpPort}${path}`, {
      method,
      redirect: "manual",
      ...(method === "GET" ? {} : { body: JSON.stringify({ reason: "openapi test" }) })
    })
    // The fallthrough is JSON; anything else (a page, a redirect, an event stream that never ends) is a route.
    if (!(res.headers.get("content-type") ?? "").startsWith("application/json")) {
      await res.body?.cancel()
      return { answered: true, status: res.status }
    }
    const body = (await res.json()) as { reason?: string }
    const fallthrough = res.status === 405 || (res.status === 404 && (body.reason ?? "").startsWith("no endpoint at"))
    return { answered: !fallthrough, status: res.status }
  }

  it("is OpenAPI 3.1 with a role for every operation and every reference resolved", async () => {
    const doc = await document()
    expect(doc.openapi).toBe("3.1.0")
    for (const [path, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops)) {
        expect(["none", "read", "operate", "submit"], `${method} ${path}`).toContain(op["x-baton-access"])
        expect(Object.keys(op.responses).length, `${method} ${path}`).toBeGreaterThan(0)
      }
    for (const m of JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) expect(doc.components.schemas, m[1]).toHaveProperty(m[1]!)
    // The apps' own routes are in it: the comments app's.
    expect(doc.paths["/comments"]?.post?.["x-baton-access"]).toBe("submit")
  })

  it("has every operation the router answers, and the router answers every operation it has", async () => {
    const doc = await document()
    const concrete = Object.keys(doc.paths).map((p) => p.replace(/\{[^}]+\}/g, "nope"))
    const fromSource = pathsInSource()
    // The source scan finds the router's paths (a guard on the scan itself).
    expect(fromSource).toEqual(expect.arrayContaining(["/healthz", "/openapi.json", "/cluster", "/workflows", "/dashboard", "/errors", "/operations"]))
    // Not `//nope` under `/`: the router would read it as a URL with the host `nope`.
    const candidates = new Set([...concrete, ...fromSource.flatMap((p) => (p === "/" ? [p] : [p, `${p}/nope`, ...["restart", "discard", "resubmit"].map((a) => `${p}/nope/${a}`)]))])
    const mismatches: Array<string> = []
    for (const path of candidates)
      for (const method of methods) {
        const { answered: yes, status } = await answered(method, path)
        if (yes !== documented(doc, method, path)) mismatches.push(`${method} ${path}: answered ${status}, ${yes ? "not documented" : "documented"}`)
      }
    expect(mismatches).toEqual([])
  })

  it("for any path and method: answered exactly when documented", async () => {
    const doc = await document()
    const segment = fc.oneof(
      fc.constantFrom("healthz", "openapi.json", "errors", "cluster", "workflows", "dashboard", "operations", "comments", "flows", "metrics", "console", "restart", "discard", "resubmit", "nope"),
      // Not `.` or `..`: the URL would be normalised to another path than the one checked.
      fc.stringMatching(/^[a-z0-9.-]{1,8}$/).filter((s) => s !== "." && s !== "..")
    )
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 3 }), fc.constantFrom(...methods), async (segments, method) => {
        const path = `/${segments.join("/")}`
        expect((await answered(method, path)).answered, `${method} ${path}`).toBe(documented(doc, method, path))
      }),
      // A console path that is no file of it (found by this property once): a 404 of the console, documented.
      { numRuns: 150, examples: [[["console", "a.b"], "GET"], [["console", ".x"], "GET"]] }
    )
  })

  it("describes what the runtime answers: every answer matches its documented schema", async () => {
    const port = ctx.h.runtime.httpPort
    // Something in every list: a failed workflow, a dashboard entry, a rejection, an operator action.
    const order = randomUUID()
    const data = { customerId: "c-openapi", email: "h@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card: "4000000000000119" } }
    await ctx.client.publishAsync("initiate/place-order", JSON.stringify({ id: order, type: "place-order", data }), { qos: 1 })
    await ctx.client.publishAsync("initiate/place-trade", JSON.stringify({ id: randomUUID(), type: "place-trade", data: { account: "ACC-404", symbol: "AAPL", side: "buy", quantity: 1 } }), { qos: 1 })
    await ctx.client.publishAsync("initiate/place-order", "{not json", { qos: 1 })
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).json() as Promise<any>
    await waitFor(async () => (await get("/workflows?status=failed")).workflows.length > 0 && (await get("/dashboard")).entries.length > 0, "a failed workflow and a dashboard entry")
    await fetch(`http://127.0.0.1:${port}/workflows/nope/discard`, { method: "POST", body: JSON.stringify({ reason: "r" }) })

    const doc = await document()
    const ajv = new Ajv2020({ strict: false, allErrors: true })
    ajv.addSchema({ ...doc, $id: "openapi" })
    const check = async (method: string, path: string, template: string, status: string, body?: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
      expect(String(res.status), `${method} ${path}`).toBe(status)
      const pointer = ["paths", template, method.toLowerCase(), "responses", status, "content", "application/json", "schema"].map((k) => k.replaceAll("~", "~0").replaceAll("/", "~1")).join("/")
      const validate = ajv.getSchema(`openapi#/${pointer}`)!
      const answer = await res.json()
      expect(validate(answer) ? [] : validate.errors, `${method} ${path}: ${JSON.stringify(answer).slice(0, 300)}`).toEqual([])
      return answer
    }
    await check("GET", "/healthz", "/healthz", "200")
    await check("GET", "/openapi.json", "/openapi.json", "200")
    await check("GET", "/errors", "/errors", "200")
    await check("GET", "/workflows", "/workflows", "200")
    await check("GET", `/workflows/${order}`, "/workflows/{id}", "200")
    await check("GET", "/workflows/nope", "/workflows/{id}", "404")
    await check("POST", "/workflows/nope/restart", "/workflows/{id}/restart", "404")
    await check("POST", `/workflows/${order}/discard`, "/workflows/{id}/discard", "400", {})
    await check("GET", "/dashboard?status=all", "/dashboard", "200")
    await check("GET", "/dashboard?status=bogus", "/dashboard", "400")
    await check("GET", "/operations", "/operations", "200")
    await check("GET", "/cluster", "/cluster", "404")
    await check("POST", "/comments", "/comments", "400", {})
    const entry = (await get("/dashboard")).entries[0]
    await check("POST", `/dashboard/${entry.id}/discard`, "/dashboard/{id}/discard", "200", { reason: "openapi test" })
    await check("POST", `/dashboard/${entry.id}/resubmit`, "/dashboard/{id}/resubmit", "409")
    await check("POST", `/workflows/${order}/restart`, "/workflows/{id}/restart", "200", { payment: { card: "4242424242424242" } })
  })
})
