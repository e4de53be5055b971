/**
 * The HTTP API as an OpenAPI 3.1 document, served at `GET /openapi.json` (no token needed: it
 * describes the API, it holds no data). Written by hand next to the router in Http.ts; the test
 * `openapi.int.test.ts` checks that every route the router answers is here and every operation
 * here is answered, so the two cannot drift apart.
 */
import { Acl } from "@baton/auth"

/** Who may call an operation: nobody needs a token (`none`), or an access the users' roles grant (Acl.httpRoles). */
export type Access = "none" | Acl.HttpAccess

type Schema = Readonly<Record<string, unknown>>

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` })
const object = (properties: Readonly<Record<string, Schema>>, required: ReadonlyArray<string> = Object.keys(properties)): Schema => ({
  type: "object",
  properties,
  required
})
const text: Schema = { type: "string" }
const time: Schema = { type: "string", format: "date-time" }
const int: Schema = { type: "integer" }
const any: Schema = {}
const list = (items: Schema): Schema => ({ type: "array", items })
const nullable = (s: Schema): Schema => ({ oneOf: [s, { type: "null" }] })

const schemas: Readonly<Record<string, Schema>> = {
  Error: object({ error: { type: "string", examples: ["not found", "forbidden", "unauthorized", "bad request", "conflict", "service unavailable"] }, reason: text }),
  Next: { type: "string", description: "Present while more entries follow: pass it as `cursor` for the next page." },
  Health: { type: "object", properties: { status: { enum: ["starting", "ready", "stopping"] } }, required: ["status"], additionalProperties: true },
  Rejection: object(
    {
      id: text,
      at: time,
      kind: { enum: ["malformed-json", "schema-violation", "unknown-topic", "oversized-payload", "processing-failed"] },
      topic: text,
      reason: text,
      issues: list(object({ path: text, message: text })),
      payload: text,
      payloadEncoding: { enum: ["utf8", "base64"] },
      payloadBytes: int,
      payloadTruncated: { type: "boolean" },
      processor: text,
      attempts: int
    },
    ["id", "at", "kind", "topic", "reason", "payload", "payloadEncoding", "payloadBytes", "payloadTruncated"]
  ),
  Errors: object(
    {
      counts: { type: "object", additionalProperties: int, description: "Rejections by kind." },
      security: { type: "object", additionalProperties: int, description: "Security refusals by reason." },
      recent: list(ref("Rejection")),
      next: ref("Next")
    },
    ["counts", "security", "recent"]
  ),
  Command: object(
    {
      key: text,
      name: text,
      channel: text,
      track: text,
      step: int,
      status: text,
      attempts: int,
      generation: int,
      sentAt: time,
      ackedAt: time,
      failedAt: time,
      error: text
    },
    ["key", "name", "channel", "step", "status", "attempts"]
  ),
  Workflow: object(
    {
      id: text,
      workflow: text,
      domain: text,
      status: { enum: ["running", "failed", "discarded", "completed"] },
      track: text,
      step: { type: "integer", description: "The current step, from 1." },
      failure: { type: "object", description: "step, command, reason" },
      discarded: { type: "object", description: "by, reason, at, compensations" },
      startedAt: time,
      updatedAt: time,
      commands: list(ref("Command")),
      input: any
    },
    ["id", "workflow", "domain", "status", "step", "commands"]
  ),
  /** A workflow that a restart finished at once (its commands run in the restart's transaction): deleted, only its id is left. */
  Finished: object({ id: text, status: { enum: ["completed"] } }),
  Workflows: object({ workflows: list(ref("Workflow")), next: ref("Next") }, ["workflows"]),
  DashboardEntry: object(
    {
      id: text,
      processor: text,
      topic: text,
      key: text,
      type: text,
      failedId: text,
      error: text,
      status: { enum: ["open", "repaired", "resubmitted", "discarded"] },
      resolution: nullable(text),
      payload: any,
      resubmittedPayload: any,
      attempts: any,
      trail: list(text),
      createdAt: time,
      resolvedAt: nullable(time)
    },
    ["id", "processor", "topic", "key", "type", "failedId", "error", "status", "payload", "trail", "createdAt"]
  ),
  Held: object({ processor: text, key: text, failedId: text, resubmittedId: nullable(text), since: time, parked: int }, ["processor", "key", "failedId", "since", "parked"]),
  Dashboard: object({ entries: list(ref("DashboardEntry")), next: ref("Next"), held: list(ref("Held")) }, ["entries", "held"]),
  Operation: object(
    { id: text, at: time, action: text, target: text, user: text, reason: nullable(text), status: int, detail: { type: "object" } },
    ["id", "at", "action", "target", "user", "status", "detail"]
  ),
  Operations: object({ operations: list(ref("Operation")), next: ref("Next") }, ["operations"]),
  Reason: object({ reason: { type: "string", minLength: 1 } }),
  Patch: { type: "object", description: "Merged into the workflow's input (restart), or the corrected data (resubmit).", additionalProperties: true },
  Delivery: object({ processor: text, status: { enum: ["pending", "done", "failed", "parked"] }, receivedAt: time, doneAt: time }, ["processor", "status", "receivedAt"]),
  FlowEvent: object(
    { id: text, type: text, key: text, correlationId: text, causationId: text, occurredAt: text, topic: text, data: any, deliveries: list(ref("Delivery")) },
    ["id", "type", "key", "correlationId", "causationId", "occurredAt", "topic", "deliveries"]
  ),
  FlowSummary: object(
    { correlationId: text, initiating: object({ id: text, type: text, key: text, occurredAt: text }), events: int, types: list(text), pending: int, parked: int, failed: int, lastAt: text },
    ["correlationId", "events", "types", "pending", "parked", "failed", "lastAt"]
  ),
  Flow: object(
    { correlationId: text, summary: ref("FlowSummary"), events: list(ref("FlowEvent")), rejections: list({ type: "object" }), dashboard: list({ type: "object" }) },
    ["correlationId", "summary", "events", "rejections", "dashboard"]
  ),
  FlowList: object({ flows: list(ref("FlowSummary")), type: text, notReached: text }, ["flows"])
}

const paging = [
  { name: "limit", in: "query", description: "Entries per page (default 100).", schema: { type: "integer", minimum: 1 } },
  { name: "cursor", in: "query", description: "The `next` of the previous page; a cursor this list did not give out is a 400.", schema: text },
  { name: "order", in: "query", description: "`asc` oldest first, `desc` newest first.", schema: { enum: ["asc", "desc"] } }
]
const idParam = { name: "id", in: "path", required: true, schema: text }

const answer = (description: string, schema?: Schema) => ({ description, ...(schema === undefined ? {} : { content: { "application/json": { schema } } }) })
const error = (description: string) => answer(description, ref("Error"))
const body = (schema: Schema, required: boolean) => ({ required, content: { "application/json": { schema } } })

interface Operation {
  readonly summary: string
  readonly access: Access
  readonly parameters?: ReadonlyArray<unknown>
  readonly requestBody?: unknown
  readonly responses: Readonly<Record<string, unknown>>
}

/** The runtime's own operations, by path and method (lower case, as OpenAPI has them). */
const runtimeOperations: Readonly<Record<string, Readonly<Record<string, Operation>>>> = {
  "/healthz": {
    get: {
      summary: "Readiness: 200 once every processor is subscribed, 503 while starting and stopping",
      access: "none",
      parameters: [
        { name: "gc", in: "query", description: "`1` collects garbage first (Node with --expose-gc).", schema: { enum: ["1"] } },
        { name: "statements", in: "query", description: "`1` adds the SQL statements sent so far, per statement text (no values), most sent first.", schema: { enum: ["1"] } }
      ],
      responses: { "200": answer("ready", ref("Health")), "503": answer("starting or stopping", ref("Health")) }
    }
  },
  "/openapi.json": {
    get: { summary: "This document", access: "none", responses: { "200": answer("the OpenAPI 3.1 document", { type: "object" }) } }
  },
  "/errors": {
    get: {
      summary: "Rejections, newest first, with counts by kind and security counters",
      access: "read",
      parameters: paging,
      responses: { "200": answer("a page of rejections", ref("Errors")), "400": error("a bad paging parameter") }
    }
  },
  "/cluster": {
    get: {
      summary: "The cluster's instances, their partitions and workflows (BATON_DATABASE_URL)",
      access: "read",
      responses: { "200": answer("the cluster", { type: "object" }), "404": error("a single instance on its embedded store") }
    }
  },
  "/workflows": {
    get: {
      summary: "Workflows in flight, failed or discarded, oldest change first (mediator topology)",
      access: "read",
      parameters: [
        { name: "status", in: "query", schema: { enum: ["running", "failed", "discarded"] } },
        { name: "domain", in: "query", schema: text },
        ...paging
      ],
      responses: { "200": answer("a page of workflows", ref("Workflows")), "400": error("a bad paging parameter"), "404": error("not the mediator topology") }
    }
  },
  "/workflows/{id}": {
    get: {
      summary: "One workflow: its status, step, failure and commands",
      access: "read",
      parameters: [idParam],
      responses: { "200": answer("the workflow", ref("Workflow")), "404": error("unknown, or finished") }
    }
  },
  "/workflows/{id}/restart": {
    post: {
      summary: "Resume a failed workflow at its failed step; the body is merged into its input",
      access: "operate",
      parameters: [idParam],
      requestBody: body(ref("Patch"), false),
      responses: {
        "200": answer("the workflow after the restart (only its id and status completed when it finished at once), with `operation`", { anyOf: [ref("Workflow"), ref("Finished")] }),
        "400": error("a body that is not a JSON object"),
        "404": error("unknown workflow"),
        "409": error("the workflow is not failed")
      }
    }
  },
  "/workflows/{id}/discard": {
    post: {
      summary: "Give up on a failed workflow; its onDiscard compensations are sent once",
      access: "operate",
      parameters: [idParam],
      requestBody: body(ref("Reason"), true),
      responses: { "200": answer("the discarded workflow, with `operation`", ref("Workflow")), "400": error("no reason"), "404": error("unknown workflow"), "409": error("not failed") }
    }
  },
  "/dashboard": {
    get: {
      summary: "The workflow processor's dashboard, oldest first, and the held keys",
      access: "read",
      parameters: [{ name: "status", in: "query", schema: { enum: ["open", "repaired", "resubmitted", "discarded", "all"], default: "open" } }, ...paging],
      responses: { "200": answer("a page of entries", ref("Dashboard")), "400": error("a bad status or paging parameter"), "404": error("no processor parks failed messages") }
    }
  },
  "/dashboard/{id}/resubmit": {
    post: {
      summary: "Resubmit an open entry's message to its consumer; a body replaces its data",
      access: "operate",
      parameters: [idParam],
      requestBody: body(ref("Patch"), false),
      responses: {
        "200": answer("the entry, with `resubmittedPayload` and `operation`", ref("DashboardEntry")),
        "400": error("a body that is not a JSON object"),
        "404": error("unknown entry"),
        "409": error("already resolved")
      }
    }
  },
  "/dashboard/{id}/discard": {
    post: {
      summary: "Discard an open entry; its key is released and its parked messages drain",
      access: "operate",
      parameters: [idParam],
      requestBody: body(ref("Reason"), true),
      responses: { "200": answer("the entry, with `operation`", ref("DashboardEntry")), "400": error("no reason"), "404": error("unknown entry"), "409": error("already resolved") }
    }
  },
  "/": {
    get: { summary: "Redirects to the operator console", access: "none", responses: { "302": answer("to /console/") } }
  },
  "/console": {
    get: { summary: "Redirects to the operator console", access: "none", responses: { "302": answer("to /console/") } }
  },
  "/console/{file}": {
    get: {
      summary: "The operator console's static files (index.html when empty); they hold no data, the pages call the API with the user's token",
      access: "none",
      parameters: [{ name: "file", in: "path", required: true, schema: text }],
      responses: { "200": { description: "the file (HTML, CSS or JavaScript)" }, "404": { description: "no such file" } }
    }
  },
  "/flows": {
    get: {
      summary: "Flows seen in a time window, newest first: by correlation id, key or event type",
      access: "read",
      parameters: [
        { name: "correlationId", in: "query", schema: text },
        { name: "key", in: "query", schema: text },
        { name: "type", in: "query", description: "Flows with an event of this type.", schema: text },
        { name: "minutes", in: "query", description: "The window (default 60).", schema: { type: "integer", minimum: 1 } },
        { name: "since", in: "query", description: "The window's start, instead of minutes.", schema: time },
        { name: "limit", in: "query", schema: { type: "integer", minimum: 1 } }
      ],
      responses: { "200": answer("the flows' summaries", ref("FlowList")), "400": error("a bad parameter") }
    }
  },
  "/flows/stuck": {
    get: {
      summary: "Initiating events of type X in the last N minutes whose flow has not reached event Y",
      access: "read",
      parameters: [
        { name: "type", in: "query", required: true, schema: text },
        { name: "notReached", in: "query", required: true, schema: text },
        { name: "minutes", in: "query", description: "The window (default 10).", schema: { type: "integer", minimum: 1 } },
        { name: "limit", in: "query", schema: { type: "integer", minimum: 1 } }
      ],
      responses: { "200": answer("the stuck flows, oldest first", ref("FlowList")), "400": error("type or notReached missing, or a bad parameter") }
    }
  },
  "/flows/{id}": {
    get: {
      summary: "One flow (by correlation id): its events by causation, each processor's delivery status, its rejections and dashboard entries",
      access: "read",
      parameters: [idParam],
      responses: { "200": answer("the flow (empty lists when nothing is kept)", ref("Flow")) }
    }
  },
  "/events/stream": {
    get: {
      summary: "Server-sent events: each envelope the runtime publishes from now on (event `envelope`), masked",
      access: "read",
      parameters: [
        { name: "correlationId", in: "query", schema: text },
        { name: "type", in: "query", schema: text }
      ],
      responses: { "200": { description: "a text/event-stream that stays open" } }
    }
  },
  "/errors/{id}/resubmit": {
    post: {
      summary: "Resubmit the message of a processing-failed rejection to the processor that failed on it; a body replaces its data",
      access: "operate",
      parameters: [idParam],
      requestBody: body(ref("Patch"), false),
      responses: {
        "200": answer("the resubmission (rejection, processor, failedId, resubmittedId, corrected), with `operation`", { type: "object" }),
        "400": error("a body that is not JSON"),
        "404": error("unknown rejection"),
        "409": error("not a processing failure, resubmitted already, or its message is no longer kept")
      }
    }
  },
  "/metrics": {
    get: {
      summary: "Prometheus metrics: messages handled, retries, handling time, in flight, inbox and outbox depth, parked, dashboard, workflows by status, broker connections",
      access: "read",
      responses: { "200": { description: "the Prometheus text exposition format (text/plain; version=0.0.4)" } }
    }
  },
  "/operations": {
    get: {
      summary: "The operations log, newest first: every operator action with its user",
      access: "read",
      parameters: [{ name: "target", in: "query", description: "Only the actions on this workflow or entry.", schema: text }, ...paging],
      responses: { "200": answer("a page of operations", ref("Operations")), "400": error("a bad paging parameter") }
    }
  }
}

/** Paths answered at the bound on requests in progress too (Http.ts): every other answers 503 past it. */
const unbounded = new Set(["/healthz", "/metrics"])
const busy = {
  ...error("more than `BATON_HTTP_MAX_CONCURRENT` requests in progress; retry after the `Retry-After` header's seconds"),
  headers: { "Retry-After": { description: "Seconds to wait before retrying (1)", schema: int } }
}

const withAccess = (op: Operation, path: string) => {
  const { access, ...rest } = op
  const roles = access === "none" ? [] : Acl.httpRoles[access]
  const responses = unbounded.has(path) ? rest.responses : { ...rest.responses, "503": busy }
  return {
    ...rest,
    responses,
    description: access === "none" ? "Needs no token." : `Needs a bearer token of a user with the ${roles.join(" or ")} role (access \`${access}\`).`,
    "x-baton-access": access,
    "x-baton-roles": roles,
    ...(access === "none"
      ? { security: [] }
      : {
          responses: {
            ...responses,
            "401": error("no token, or an unknown one (with a users file)"),
            "403": error(`the user lacks the ${roles.join(" or ")} role`)
          }
        })
  }
}

/**
 * The document for a runtime whose apps serve `appRoutes` (`METHOD /path`, e.g. `POST /comments`):
 * app endpoints take a JSON object and need the `submit` access.
 */
export const document = (appRoutes: ReadonlyArray<string> = []) => {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const [path, ops] of Object.entries(runtimeOperations))
    paths[path] = Object.fromEntries(Object.entries(ops).map(([method, op]) => [method, withAccess(op, path)]))
  for (const route of appRoutes) {
    const [method, path] = route.split(" ") as [string, string]
    paths[path] = {
      ...paths[path],
      [method.toLowerCase()]: withAccess({
        summary: `An app's own endpoint (${route})`,
        access: "submit",
        requestBody: body({ type: "object" }, false),
        responses: { "200": answer("the app's answer", any), "400": error("a body that does not match the app's schema") }
      }, path)
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Baton runtime HTTP API",
      version: "0.1.0",
      description:
        "Health, the record (rejections, workflows, dashboard, cluster, operations) and the operator actions. With a users file every operation but /healthz and /openapi.json needs `Authorization: Bearer <token>` (pnpm baton token add); without one the port is on loopback and a local request may do everything. Errors are `{error, reason}`. Past `BATON_HTTP_MAX_CONCURRENT` requests in progress, every operation but /healthz and /metrics answers 503 with `Retry-After: 1`. Every answer masks card numbers and the apps' sensitive fields."
    },
    servers: [{ url: "http://127.0.0.1:8080" }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "`<id>.<secret>` from `pnpm baton token add <user>`" } },
      schemas
    }
  }
}
