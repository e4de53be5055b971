/**
 * `pnpm baton <command>`: the runtime with a user's apps (start), a new app project (new), the
 * users file (user, token), a running runtime over HTTP (workflows,
 * dashboard, errors, cluster, operations, flow), live events over MQTT (tail), and the HTTP API's
 * OpenAPI document (openapi). Parsed by effect's own `effect/cli`; `--help` on any command.
 *
 * HTTP commands talk to `--url` (BATON_HTTP, default http://<BATON_HOST>:<BATON_HTTP_PORT>, as the
 * examples do) with `--token` (BATON_TOKEN); they print aligned tables, or the runtime's JSON with
 * `--json`. `tail` connects to `--mqtt` (BATON_URL, default mqtt://<BATON_HOST>:<BATON_MQTT_PORT>).
 * A failure is one line on standard error and exit code 1 (2 for bad usage).
 */
import { randomUUID } from "node:crypto"
import { resolve } from "node:path"
// Modules, not the `effect` and `@effect/platform-node` indexes: each index loads everything, which
// doubled the start of every command. mqtt and the OpenAPI document load only where used.
import * as NodeChildProcessSpawner from "@effect/platform-node/NodeChildProcessSpawner"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeStdio from "@effect/platform-node/NodeStdio"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as EffectRuntime from "effect/Runtime"
import { Argument, Command, Flag } from "effect/cli"
import { Acl, Users } from "@baton/auth"
import { causationTree, fields, table, type FlowEvent } from "./CliFormat.ts"

/** A failure told in one line, with the exit code: 1, or 2 for bad usage. */
class Failure extends Error {
  readonly code: number
  constructor(message: string, code = 1) {
    super(message)
    this.code = code
  }
}

const out = (text: string): void => {
  process.stdout.write(text)
}
const printJson = (value: unknown): void => out(`${JSON.stringify(value, null, 2)}\n`)

/** A handler that fails with one line on standard error, never a stack. */
const act =
  <A>(run: (args: A) => Promise<void>) =>
  (args: A) =>
    Effect.promise(async () => {
      try {
        await run(args)
      } catch (error) {
        process.stderr.write(`baton: ${error instanceof Error ? error.message : String(error)}\n`)
        process.exitCode = error instanceof Failure ? error.code : 1
      }
    })

const some = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o)

// ---------------------------------------------------------------- passwords

/** The first line of standard input (a pipe, a file). */
const readLine = async (): Promise<string> => {
  let input = ""
  for await (const chunk of process.stdin) {
    input += String(chunk)
    if (input.includes("\n")) break
  }
  return input.split("\n")[0]!.replace(/\r$/, "")
}

/** Typed at a terminal without echo (raw mode): Enter ends it, Backspace deletes, Ctrl-C aborts. */
const readHidden = (prompt: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const stdin = process.stdin
    // Echo off before the prompt shows: what is typed as soon as it appears is not echoed either.
    stdin.setRawMode(true)
    process.stderr.write(prompt)
    stdin.resume()
    stdin.setEncoding("utf8")
    let typed = ""
    const done = (error?: Error) => {
      stdin.setRawMode(false)
      stdin.pause()
      stdin.removeListener("data", onData)
      process.stderr.write("\n")
      if (error === undefined) resolve(typed)
      else reject(error)
    }
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return done()
        if (ch === "\u0003") return done(new Failure("interrupted", 130))
        if (ch === "\u007f" || ch === "\b") typed = typed.slice(0, -1)
        else if (ch >= " ") typed += ch
      }
    }
    stdin.on("data", onData)
  })

/** BATON_PASSWORD, else typed at the terminal without echo, else the first line of standard input. */
const readPassword = async (): Promise<string> => {
  if (process.env.BATON_PASSWORD !== undefined) return process.env.BATON_PASSWORD
  return process.stdin.isTTY ? readHidden("password: ") : readLine()
}

// ---------------------------------------------------------------- apps

/** Set by `start`: a signal then ends a graceful shutdown, exit code 0 (as `pnpm start`). */
let serving = false

/**
 * `baton start --app <module>`: what `pnpm start` does (Serve.ts), with BATON_APP set to these
 * apps; a missing module, or one without an app, is one line and exit code 1.
 */
const start = Command.make(
  "start",
  {
    app: Flag.String("app").pipe(
      Flag.withDescription("An app module (./src/app.ts, its default export a Baton.app) or a reference app's name; repeat for several (default: BATON_APP)"),
      Flag.atLeast(0)
    )
  },
  ({ app }) =>
    Effect.gen(function* () {
      serving = true
      const Serve = yield* Effect.promise(() => import("./Serve.ts"))
      if (app.length > 0) process.env.BATON_APP = app.join(",")
      yield* Serve.program(process.env).pipe(Effect.catchCause((cause) => Effect.sync(() => void (Cause.hasInterruptsOnly(cause) ? undefined : (process.exitCode = 1)))))
    })
).pipe(Command.withDescription("Run the runtime with these apps; BATON_* variables configure it, as for pnpm start"))

const scaffold = Command.make(
  "new",
  { dir: Argument.String("dir").pipe(Argument.withDescription("Where to create the project (absent or empty)")) },
  act(async ({ dir }) => {
    const { scaffold, ScaffoldError } = await import("./Scaffold.ts")
    let files: ReadonlyArray<string>
    try {
      // `pnpm baton` runs in the repository's root: a relative directory is the caller's (INIT_CWD).
      files = scaffold(resolve(process.env.INIT_CWD ?? process.cwd(), dir))
    } catch (error) {
      throw error instanceof ScaffoldError ? new Failure(error.message, 2) : error
    }
    out(`${files.map((f) => `created ${f}`).join("\n")}\n\nnext: cd ${dir} && npm install && npm test && npm start\n`)
  })
).pipe(Command.withDescription("Create an app project (one processor, one workflow, a property test) that depends on this checkout's @baton/sdk"))

// ---------------------------------------------------------------- the users file

const fileFlag = Flag.String("file").pipe(Flag.withDescription("The users file (default BATON_AUTH_FILE)"), Flag.optional)
const usersFile = (file: Option.Option<string>): string =>
  some(file) ?? process.env.BATON_AUTH_FILE ?? (() => { throw new Failure("no users file: pass --file or set BATON_AUTH_FILE", 2) })()

const userAdd = Command.make(
  "add",
  {
    name: Argument.String("name"),
    role: Flag.String("role").pipe(Flag.withDescription(`One of ${Acl.allRoles.join(", ")}; repeat for several (default client)`), Flag.atLeast(0)),
    file: fileFlag
  },
  act(async ({ name, role, file }) => {
    const path = usersFile(file)
    const bad = role.filter((r) => !Acl.isRole(r))
    if (bad.length > 0) throw new Failure(`unknown role ${bad.join(", ")}: roles are ${Acl.allRoles.join(", ")}`, 2)
    const password = await readPassword()
    if (password.length < 8) throw new Failure("the password must hold at least 8 characters", 2)
    const roles = role.length === 0 ? ["client" as const] : (role as Array<Acl.Role>)
    Users.save(path, await Users.addUser(Users.loadOrEmpty(path), name, password, roles))
    out(`user ${name} saved in ${path} with roles ${roles.join(",")}\n`)
  })
).pipe(Command.withDescription("Add or replace a user; the password comes from BATON_PASSWORD, a hidden prompt at a terminal, or the first line of standard input"))

const userRemove = Command.make(
  "remove",
  { name: Argument.String("name"), file: fileFlag },
  act(async ({ name, file }) => {
    const path = usersFile(file)
    const current = Users.loadOrEmpty(path)
    if (current.users[name] === undefined) throw new Failure(`no user ${name} in ${path}`, 2)
    const { [name]: _, ...users } = current.users
    const tokens = Object.fromEntries(Object.entries(current.tokens).filter(([, t]) => t.user !== name))
    Users.save(path, { users, tokens })
    out(`user ${name} removed from ${path}\n`)
  })
).pipe(Command.withDescription("Remove a user and its tokens"))

const userList = Command.make(
  "list",
  { file: fileFlag },
  act(async ({ file }) => {
    for (const [n, u] of Object.entries(Users.loadOrEmpty(usersFile(file)).users)) out(`${n} ${u.roles.join(",")}\n`)
  })
).pipe(Command.withDescription("List the users and their roles"))

const tokenAdd = Command.make(
  "add",
  { user: Argument.String("user"), file: fileFlag },
  act(async ({ user, file }) => {
    const path = usersFile(file)
    const current = Users.loadOrEmpty(path)
    if (current.users[user] === undefined) throw new Failure(`no user ${user} in ${path}: add the user first`, 2)
    const { file: next, token } = Users.addToken(current, user)
    Users.save(path, next)
    out(`${token}\n`)
  })
).pipe(Command.withDescription("Create an HTTP bearer token for a user; printed once"))

const tokenList = Command.make(
  "list",
  { file: fileFlag },
  act(async ({ file }) => {
    // The id is the part of a token before the dot; older scrypt-hashed tokens are marked for replacement.
    const current = Users.loadOrEmpty(usersFile(file))
    const old = new Set(Users.scryptTokens(current))
    for (const [id, t] of Object.entries(current.tokens)) out(`${id} ${t.user}${old.has(id) ? " scrypt (replace it: token add, then token remove)" : ""}\n`)
  })
).pipe(Command.withDescription("List token ids and their users"))

const tokenRemove = Command.make(
  "remove",
  { id: Argument.String("id"), file: fileFlag },
  act(async ({ id, file }) => {
    const path = usersFile(file)
    const current = Users.loadOrEmpty(path)
    if (current.tokens[id] === undefined) throw new Failure(`no token ${id} in ${path} (the id is the part of the token before the dot; see 'pnpm baton token list')`, 2)
    Users.save(path, Users.removeToken(current, id))
    out(`token ${id} removed from ${path}\n`)
  })
).pipe(Command.withDescription("Remove a token by its id"))

// ---------------------------------------------------------------- the HTTP API

const api = {
  url: Flag.String("url").pipe(Flag.withDescription("The runtime's HTTP address (default BATON_HTTP, or http://<BATON_HOST>:<BATON_HTTP_PORT>)"), Flag.optional),
  token: Flag.String("token").pipe(Flag.withDescription("A bearer token from 'pnpm baton token add' (default BATON_TOKEN)"), Flag.optional),
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print the runtime's JSON answer instead of a table"), Flag.withDefault(false))
}
const paging = {
  limit: Flag.Int("limit").pipe(Flag.withDescription("Entries per page"), Flag.optional),
  cursor: Flag.String("cursor").pipe(Flag.withDescription("The 'next' of the previous page"), Flag.optional),
  order: Flag.Literals("order", ["asc", "desc"]).pipe(Flag.withDescription("asc: oldest first; desc: newest first"), Flag.optional)
}
type Api = { readonly url: Option.Option<string>; readonly token: Option.Option<string>; readonly json: boolean }
type Paging = { readonly limit: Option.Option<number>; readonly cursor: Option.Option<string>; readonly order: Option.Option<"asc" | "desc"> }

/** The runtime listens on the wildcard address when told to; a client connects to loopback then. */
const clientHost = (host: string) => (host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host)
/** Where the runtime is, from its own variables (README's configuration table), like the examples. */
const endpoint = (scheme: string, portVariable: string, fallback: number) =>
  `${scheme}://${clientHost(process.env.BATON_HOST || "127.0.0.1")}:${process.env[portVariable] || fallback}`

const baseUrl = (a: Api) => (some(a.url) ?? process.env.BATON_HTTP ?? endpoint("http", "BATON_HTTP_PORT", 8080)).replace(/\/+$/, "")

const query = (params: Readonly<Record<string, string | number | undefined>>): string => {
  const q = new URLSearchParams(Object.entries(params).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)] as [string, string]])))
  return q.size === 0 ? "" : `?${q}`
}
const pageQuery = (p: Paging, extra: Readonly<Record<string, string | undefined>> = {}) =>
  query({ ...extra, limit: some(p.limit), cursor: some(p.cursor), order: some(p.order) })

/** A JSON object given on the command line, or a usage error. */
const jsonObject = (text: string | undefined, flag: string): Record<string, unknown> | undefined => {
  if (text === undefined) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new Failure(`${flag} is not JSON: ${(error as Error).message}`, 2)
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Failure(`${flag} must be a JSON object`, 2)
  return value as Record<string, unknown>
}

/** Calls the runtime; any answer but 2xx becomes one line that says what to do about it. */
const call = async (a: Api, method: "GET" | "POST", path: string, body?: unknown): Promise<any> => {
  const url = `${baseUrl(a)}${path}`
  const token = some(a.token) ?? process.env.BATON_TOKEN
  let res: Response
  try {
    res = await fetch(url, {
      method,
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause
    throw new Failure(`the runtime is not reachable at ${baseUrl(a)} (${cause?.code ?? cause?.message ?? (error as Error).message}): is it running? set --url or BATON_HTTP`)
  }
  const text = await res.text()
  let answer: any
  try {
    answer = JSON.parse(text)
  } catch {
    throw new Failure(`${method} ${url} answered ${res.status} with something that is not JSON: ${text.slice(0, 200)}`)
  }
  if (res.ok) return answer
  const reason = typeof answer?.reason === "string" ? answer.reason : text.slice(0, 200)
  if (res.status === 401)
    throw new Failure(`401 unauthorized: ${reason}${token === undefined ? "; pass --token or set BATON_TOKEN" : ""}`)
  throw new Failure(`${res.status} ${answer?.error ?? "error"}: ${reason}`)
}

const nextLine = (next: unknown) => (typeof next === "string" ? `more: --cursor ${next}\n` : "")

const workflowsList = Command.make(
  "list",
  {
    ...api,
    ...paging,
    status: Flag.Literals("status", ["running", "failed", "discarded"]).pipe(Flag.optional),
    domain: Flag.String("domain").pipe(Flag.optional)
  },
  act(async (a) => {
    const answer = await call(a, "GET", `/workflows${pageQuery(a, { status: some(a.status), domain: some(a.domain) })}`)
    if (a.json) return printJson(answer)
    out(table(["id", "workflow", "domain", "status", "step", "updated", "failure"], answer.workflows.map((w: any) => [w.id, w.workflow, w.domain, w.status, w.step, w.updatedAt, w.failure?.reason])))
    out(nextLine(answer.next))
  })
).pipe(Command.withDescription("Workflows in flight, failed or discarded (mediator topology)"))

const showWorkflow = (w: any) => {
  out(fields([["id", w.id], ["workflow", w.workflow], ["domain", w.domain], ["status", w.status], ["step", w.step], ["started", w.startedAt], ["updated", w.updatedAt],
    ...(w.failure === undefined ? [] : [["failure", w.failure] as const]), ...(w.discarded === undefined ? [] : [["discarded", w.discarded] as const]), ["input", w.input]]))
  if (Array.isArray(w.commands)) out(`\n${table(["step", "command", "channel", "status", "attempts", "sent", "error"], w.commands.map((c: any) => [c.step, c.name, c.channel, c.status, c.attempts, c.sentAt, c.error]))}`)
}

const idArg = Argument.String("id")

const workflowsShow = Command.make(
  "show",
  { ...api, id: idArg },
  act(async (a) => {
    const answer = await call(a, "GET", `/workflows/${encodeURIComponent(a.id)}`)
    if (a.json) return printJson(answer)
    showWorkflow(answer)
  })
).pipe(Command.withDescription("One workflow: its status, step, failure and commands"))

const workflowsRestart = Command.make(
  "restart",
  { ...api, id: idArg, patch: Flag.String("patch").pipe(Flag.withDescription("A JSON object merged into the workflow's input"), Flag.optional) },
  act(async (a) => {
    const answer = await call(a, "POST", `/workflows/${encodeURIComponent(a.id)}/restart`, jsonObject(some(a.patch), "--patch"))
    if (a.json) return printJson(answer)
    out(`workflow ${a.id} restarted: ${answer.status}${answer.operation === undefined ? "" : ` (operation ${answer.operation})`}\n`)
  })
).pipe(Command.withDescription("Resume a failed workflow at its failed step (operator)"))

const reasonFlag = Flag.String("reason").pipe(Flag.withDescription("Why (recorded with your user)"))

const workflowsDiscard = Command.make(
  "discard",
  { ...api, id: idArg, reason: reasonFlag },
  act(async (a) => {
    const answer = await call(a, "POST", `/workflows/${encodeURIComponent(a.id)}/discard`, { reason: a.reason })
    if (a.json) return printJson(answer)
    out(`workflow ${a.id} discarded${answer.operation === undefined ? "" : ` (operation ${answer.operation})`}\n`)
  })
).pipe(Command.withDescription("Give up on a failed workflow (operator)"))

const dashboardList = Command.make(
  "list",
  { ...api, ...paging, status: Flag.Literals("status", ["open", "repaired", "resubmitted", "discarded", "all"]).pipe(Flag.optional) },
  act(async (a) => {
    const answer = await call(a, "GET", `/dashboard${pageQuery(a, { status: some(a.status) })}`)
    if (a.json) return printJson(answer)
    out(table(["id", "processor", "key", "type", "status", "created", "error"], answer.entries.map((e: any) => [e.id, e.processor, e.key, e.type, e.status, e.createdAt, e.error])))
    out(nextLine(answer.next))
    out(`\nheld keys\n${table(["processor", "key", "parked", "since", "failed"], answer.held.map((h: any) => [h.processor, h.key, h.parked, h.since, h.failedId]))}`)
  })
).pipe(Command.withDescription("The workflow processor's dashboard entries and held keys"))

const dashboardResubmit = Command.make(
  "resubmit",
  { ...api, id: idArg, payload: Flag.String("payload").pipe(Flag.withDescription("A JSON object: the corrected data"), Flag.optional) },
  act(async (a) => {
    const answer = await call(a, "POST", `/dashboard/${encodeURIComponent(a.id)}/resubmit`, jsonObject(some(a.payload), "--payload"))
    if (a.json) return printJson(answer)
    out(`entry ${a.id} resubmitted: ${answer.status}${answer.operation === undefined ? "" : ` (operation ${answer.operation})`}\n`)
  })
).pipe(Command.withDescription("Resubmit an open entry's message, corrected with --payload (operator)"))

const dashboardDiscard = Command.make(
  "discard",
  { ...api, id: idArg, reason: reasonFlag },
  act(async (a) => {
    const answer = await call(a, "POST", `/dashboard/${encodeURIComponent(a.id)}/discard`, { reason: a.reason })
    if (a.json) return printJson(answer)
    out(`entry ${a.id} discarded: ${answer.status}${answer.operation === undefined ? "" : ` (operation ${answer.operation})`}\n`)
  })
).pipe(Command.withDescription("Discard an open entry; its key's parked messages drain (operator)"))

const errors = Command.make(
  "errors",
  { ...api, ...paging },
  act(async (a) => {
    const answer = await call(a, "GET", `/errors${pageQuery(a)}`)
    if (a.json) return printJson(answer)
    const counts = Object.entries(answer.counts as Record<string, number>)
    out(`counts: ${counts.length === 0 ? "none" : counts.map(([k, n]) => `${k}=${n}`).join(" ")}\n`)
    const security = Object.entries((answer.security ?? {}) as Record<string, number>).filter(([, n]) => n > 0)
    if (security.length > 0) out(`security: ${security.map(([k, n]) => `${k}=${n}`).join(" ")}\n`)
    out(`\n${table(["at", "kind", "topic", "processor", "reason"], answer.recent.map((r: any) => [r.at, r.kind, r.topic, r.processor, r.reason]))}`)
    out(nextLine(answer.next))
  })
).pipe(Command.withDescription("Rejections, newest first, and their counts by kind"))

const cluster = Command.make(
  "cluster",
  api,
  act(async (a) => {
    const answer = await call(a, "GET", "/cluster")
    if (a.json) return printJson(answer)
    out(`instance ${answer.instance}, ${answer.partitions} partitions${answer.unowned?.length > 0 ? `, unowned: ${answer.unowned.join(",")}` : ""}\n\n`)
    out(table(["instance", "live", "heartbeat ms", "partitions", "workflows", "http", "mqtt"], answer.members.map((m: any) => [m.instance, m.live, m.heartbeatAgeMs, m.partitions.length, m.workflows.length, m.http, m.mqtt])))
  })
).pipe(Command.withDescription("The cluster's instances and their partitions (BATON_DATABASE_URL)"))

const operations = Command.make(
  "operations",
  { ...api, ...paging, target: Flag.String("target").pipe(Flag.withDescription("Only actions on this workflow or entry"), Flag.optional) },
  act(async (a) => {
    const answer = await call(a, "GET", `/operations${pageQuery(a, { target: some(a.target) })}`)
    if (a.json) return printJson(answer)
    out(table(["at", "user", "action", "target", "status", "reason"], answer.operations.map((o: any) => [o.at, o.user, o.action, o.target, o.status, o.reason])))
    out(nextLine(answer.next))
  })
).pipe(Command.withDescription("The operations log: every operator action with its user"))

const flow = Command.make(
  "flow",
  { ...api, correlationId: Argument.String("correlationId") },
  act(async (a) => {
    const answer = await call(a, "GET", `/flows/${encodeURIComponent(a.correlationId)}`)
    if (a.json) return printJson(answer)
    out(causationTree((answer.events ?? []) as ReadonlyArray<FlowEvent>))
    if (Array.isArray(answer.rejections) && answer.rejections.length > 0)
      out(`\nrejections\n${table(["at", "kind", "processor", "topic", "reason"], answer.rejections.map((r: any) => [r.at, r.kind, r.processor, r.topic, r.reason]))}`)
  })
).pipe(Command.withDescription("The events of one initiating event, as a tree by causation"))

// ---------------------------------------------------------------- live events

/** An MQTT topic filter: `+` a whole level, `#` the whole last level. */
const isFilter = (f: string) => f.length > 0 && !f.includes("\u0000") && f.split("/").every((l, i, all) => (l === "#" ? i === all.length - 1 : l === "+" || !/[+#]/.test(l)))

const defaultMqtt = () => process.env.BATON_URL ?? endpoint("mqtt", "BATON_MQTT_PORT", 1883)

const tail = Command.make(
  "tail",
  {
    topics: Argument.String("topic-filter").pipe(Argument.withDescription("MQTT topic filters (default events/# and errors/#)"), Argument.variadic()),
    type: Flag.String("type").pipe(Flag.withDescription("Only events of these types; repeat for several"), Flag.atLeast(0)),
    key: Flag.String("key").pipe(Flag.withDescription("Only events with this key"), Flag.optional),
    correlation: Flag.String("correlation").pipe(Flag.withDescription("Only events of this correlation id"), Flag.optional),
    count: Flag.Int("count").pipe(Flag.withDescription("Stop after this many events"), Flag.optional),
    mqtt: Flag.String("mqtt").pipe(Flag.withDescription("The broker (default BATON_URL, or mqtt://<BATON_HOST>:<BATON_MQTT_PORT>)"), Flag.optional),
    user: Flag.String("user").pipe(Flag.withDescription("The MQTT user (default BATON_USER; the password from BATON_PASSWORD or a prompt)"), Flag.optional),
    json: api.json
  },
  act(async (a) => {
    const filters = a.topics.length === 0 ? ["events/#", "errors/#"] : a.topics
    const bad = filters.filter((f) => !isFilter(f))
    if (bad.length > 0) throw new Failure(`not an MQTT topic filter: ${bad.join(", ")}`, 2)
    const user = some(a.user) ?? process.env.BATON_USER
    const password = user === undefined ? undefined : await readPassword()
    const url = some(a.mqtt) ?? defaultMqtt()
    const key = some(a.key)
    const correlation = some(a.correlation)
    const limit = some(a.count)
    // A user's client ids are its name with a suffix; a clean session, so nothing is left behind.
    const { default: mqtt } = await import("mqtt")
    const client = await mqtt
      .connectAsync(url, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        clean: true,
        clientId: `${user ?? "baton"}-tail-${randomUUID().slice(0, 8)}`,
        ...(user === undefined || password === undefined ? {} : { username: user, password })
      })
      .catch((error: Error) => {
        throw new Failure(`cannot connect to ${url}: ${error.message}${/Not authorized|Bad username/i.test(error.message) ? " (set --user and BATON_PASSWORD)" : ""}`)
      })
    // A SUBACK that refuses a filter (0x80) rejects the subscription, without saying which.
    const granted = await client.subscribeAsync([...filters], { qos: 1 }).catch(() => undefined)
    if (granted === undefined || granted.some((g) => g.qos === 128)) {
      await client.endAsync()
      throw new Failure(`the broker refused the subscription to ${filters.join(" ")}: observers, operators and clients may read events/# and errors/#, and services everything`)
    }
    process.stderr.write(`tailing ${filters.join(" ")} on ${url}\n`)
    let seen = 0
    await new Promise<void>((resolve) => {
      const stop = () => void client.endAsync().then(() => resolve())
      process.once("SIGINT", stop)
      client.on("close", () => resolve())
      client.on("message", (topic, payload) => {
        let e: any
        try {
          e = JSON.parse(payload.toString("utf8"))
        } catch {
          e = { raw: payload.toString("utf8") }
        }
        if (a.type.length > 0 && !a.type.includes(e.type)) return
        if (key !== undefined && e.key !== key) return
        if (correlation !== undefined && e.correlationId !== correlation) return
        if (a.json) out(`${JSON.stringify({ topic, ...e })}\n`)
        else out(`${[e.occurredAt ?? new Date().toISOString(), topic, e.type ?? "-", `key=${e.key ?? "-"}`, `correlation=${e.correlationId ?? "-"}`, `id=${e.id ?? "-"}`].join("  ")}\n`)
        seen += 1
        if (limit !== undefined && seen >= limit) stop()
      })
    })
  })
).pipe(Command.withDescription("Live events over MQTT, filtered by type, key or correlation id"))

const openapi = Command.make(
  "openapi",
  {},
  act(async () => printJson((await import("./OpenApi.ts")).document()))
).pipe(Command.withDescription("Print the HTTP API's OpenAPI 3.1 document (the runtime serves it at GET /openapi.json, with its apps' routes)"))

const baton = Command.make("baton").pipe(
  Command.withDescription("Run apps, create one, administer Baton: users and tokens, and a running runtime over HTTP and MQTT"),
  Command.withSubcommands([
    start,
    scaffold,
    Command.make("user").pipe(Command.withDescription("The users file"), Command.withSubcommands([userAdd, userRemove, userList])),
    Command.make("token").pipe(Command.withDescription("HTTP bearer tokens"), Command.withSubcommands([tokenAdd, tokenList, tokenRemove])),
    Command.make("workflows").pipe(Command.withDescription("Mediator workflows"), Command.withSubcommands([workflowsList, workflowsShow, workflowsRestart, workflowsDiscard])),
    Command.make("dashboard").pipe(Command.withDescription("The repair dashboard"), Command.withSubcommands([dashboardList, dashboardResubmit, dashboardDiscard])),
    errors,
    cluster,
    operations,
    flow,
    tail,
    openapi
  ])
)

const services = Layer.provideMerge(NodeChildProcessSpawner.layer, Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeStdio.layer, NodeTerminal.layer))

baton.pipe(
  Command.run({ version: "0.1.0" }),
  Effect.provide(services),
  NodeRuntime.runMain({
    teardown: (exit, onExit) => (serving && Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : EffectRuntime.defaultTeardown(exit, onExit))
  })
)
