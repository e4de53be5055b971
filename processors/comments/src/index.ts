/**
 * The comment-posting app (docs/concepts.md, section 3): asynchronous accept. `initiate/post-comment`
 * is acknowledged as soon as it is durable and announced as `comment-accepted`; then the
 * profanity, grammar and context checkers run one after the other (each a processor, about a
 * second each by default), and the outcome, `comment-published` or `comment-rejected` with the
 * reason, is e-mailed to the author. `POST /comments` does the same work synchronously, for
 * contrast: the caller waits for all of it.
 */
import { Envelope as E, Rejected, type App, type Envelope, type Processor } from "@baton/core"
import { Mailer } from "@baton/order-entry"
import { ddl, type Sql, type Store } from "@baton/store"
import { Effect, Result, Schema } from "effect"
import * as Checks from "./Checks.ts"

export { Checks }

export const names = {
  postComment: "post-comment",
  accepted: "comment-accepted",
  checked: (check: Checks.Check) => `${check}-checked`,
  published: "comment-published",
  rejected: "comment-rejected"
} as const

export const PostComment = Schema.Struct({
  author: Schema.NonEmptyString.check(Schema.isMaxLength(64)),
  email: Schema.String.check(Schema.isPattern(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, { message: "must be an e-mail address" })),
  text: Schema.NonEmptyString.check(Schema.isMaxLength(4000))
})
export type PostComment = typeof PostComment.Type

export interface Comment extends PostComment {
  readonly commentId: string
}

export interface Checked extends Comment {
  readonly check: Checks.Check
  readonly ok: boolean
  readonly reason?: string
}

export interface Decided {
  readonly commentId: string
  readonly author: string
  readonly email: string
  readonly status: "published" | "rejected"
  readonly check?: Checks.Check
  readonly reason?: string
}

export const migrations = [
  {
    name: "comments/001-tables",
    sql: ddl(
      (t) => `
      CREATE TABLE comments (id TEXT PRIMARY KEY, author TEXT NOT NULL, email TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, via TEXT NOT NULL, accepted_at TEXT NOT NULL, decided_at TEXT${t.rowid});
      CREATE TABLE comment_emails (cause_id TEXT PRIMARY KEY, comment_id TEXT NOT NULL, recipient TEXT NOT NULL, template TEXT NOT NULL, message_id TEXT NOT NULL, message TEXT, at TEXT NOT NULL${t.rowid});
    `
    )
  }
]

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const letter = (d: Decided) =>
  d.status === "published"
    ? { template: "comment-published", commentId: d.commentId, to: d.email, subject: "Your comment is published", text: `Hello ${d.author}, your comment ${d.commentId} is published.` }
    : { template: "comment-rejected", commentId: d.commentId, to: d.email, subject: "Your comment was not published", text: `Hello ${d.author}, your comment ${d.commentId} was not published: it ${d.reason}.` }

export const make = async (deps: { readonly store: Store; readonly mailer: Mailer.Mailer; readonly checkLatencyMs: number; readonly clock?: Envelope.Clock }): Promise<App> => {
  const { store, mailer, checkLatencyMs } = deps
  const clock = deps.clock ?? E.systemClock
  await store.migrate(migrations)
  const insert = store.query("INSERT INTO comments (id, author, email, text, status, via, accepted_at) VALUES (?, ?, ?, ?, 'checking', ?, ?) ON CONFLICT DO NOTHING")
  const decide = store.query("UPDATE comments SET status = ?, reason = ?, decided_at = ? WHERE id = ? AND status = 'checking'")
  const get = store.query("SELECT status, reason FROM comments WHERE id = ?")
  const insertEmail = store.query(
    "INSERT INTO comment_emails (cause_id, comment_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
  )
  const email = store.query("SELECT comment_id, recipient, template, message_id FROM comment_emails WHERE cause_id = ?")

  const intake: Processor = {
    name: "comment-intake",
    consumes: [names.postComment],
    handle: (event) =>
      Effect.gen(function* () {
        const c = event.data as PostComment
        const commentId = event.correlationId
        yield* insert.run(commentId, c.author, c.email, c.text, "mqtt", clock.now().toISOString())
        const data: Comment = { commentId, ...c }
        return [{ type: names.accepted, data, key: commentId }]
      }),
    reply: (event) => ({ commentId: event.correlationId, status: "accepted" })
  }

  /** A checker: waits its latency outside the transaction, then announces its verdict. */
  const checker = (check: Checks.Check, after: string): Processor<Checks.Verdict | undefined> => ({
    name: `${check}-checker`,
    consumes: [after],
    prepare: (event) =>
      Effect.gen(function* () {
        const c = event.data as Checked | Comment
        if ("ok" in c && !c.ok) return undefined // rejected earlier: nothing to check
        yield* Effect.promise(() => sleep(checkLatencyMs))
        return Checks.run[check](c.text)
      }),
    handle: (event, verdict) => {
      if (verdict === undefined) return Effect.succeed([])
      const { commentId, author, email: to, text } = event.data as Comment
      const data: Checked = { commentId, author, email: to, text, check, ...verdict }
      return Effect.succeed([{ type: names.checked(check), data }])
    }
  })

  const publisher: Processor = {
    name: "comment-publisher",
    consumes: Checks.checks.map(names.checked),
    handle: (event) =>
      Effect.gen(function* () {
        const c = event.data as Checked
        if (c.ok && c.check !== "context") return []
        const status = c.ok ? "published" : "rejected"
        yield* decide.run(status, c.reason ?? null, clock.now().toISOString(), c.commentId)
        const row = yield* get.get(c.commentId)
        if (row === undefined) return yield* Effect.fail(new Rejected(`unknown comment ${c.commentId}`))
        const data: Decided = { commentId: c.commentId, author: c.author, email: c.email, status, ...(c.ok ? {} : { check: c.check, reason: c.reason ?? "" }) }
        return [{ type: c.ok ? names.published : names.rejected, data }]
      })
  }

  const record = (causeId: string, d: Decided, sent: Mailer.Sent): Sql<number> => {
    const l = letter(d)
    return insertEmail.run(causeId, d.commentId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString())
  }
  /** The `email-sent` data of the mail an event caused, or undefined before it is sent. */
  const recorded = (causeId: string) =>
    Effect.map(email.get(causeId), (row) =>
      row === undefined ? undefined : { commentId: String(row.comment_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) }
    )

  /**
   * E-mails the author on `comment-published` / `comment-rejected` and announces `email-sent`: the
   * mail is sent before the transaction (at least once through SMTP), its record written in it
   * (exactly once in the store), keyed by the causing event.
   */
  const notifier = Mailer.processor({
    name: "comment-notifier",
    consumes: [names.published, names.rejected],
    mailer,
    store,
    letter: (event) => letter(event.data as Decided),
    record: (event, _l, sent) => record(event.id, event.data as Decided, sent),
    recorded: (event) => recorded(event.id)
  })

  const decode = E.decode(PostComment)

  /** `POST /comments`: the same checks and notification, while the caller waits. */
  const synchronous = async (body: Readonly<Record<string, unknown>> | undefined) => {
    const input = decode(body ?? {})
    if (Result.isFailure(input)) return { status: 400, body: { error: "bad request", reason: input.failure.map((i) => `${i.path}: ${i.message}`).join("; "), issues: input.failure } }
    const c = input.success
    const commentId = clock.newId()
    await store.transaction(insert.run(commentId, c.author, c.email, c.text, "http", clock.now().toISOString()))
    let decided: Decided = { commentId, author: c.author, email: c.email, status: "published" }
    for (const check of Checks.checks) {
      await sleep(checkLatencyMs)
      const verdict = Checks.run[check](c.text)
      if (!verdict.ok) {
        decided = { ...decided, status: "rejected", check, reason: verdict.reason }
        break
      }
    }
    const sent = await mailer.send(letter(decided))
    await store.transaction(
      Effect.gen(function* () {
        yield* decide.run(decided.status, decided.reason ?? null, clock.now().toISOString(), commentId)
        yield* record(`http:${commentId}`, decided, sent)
      })
    )
    return { status: 200, body: decided }
  }

  return {
    name: "comments",
    initiating: [{ name: names.postComment, decode, key: (d) => (d as PostComment).author }],
    processors: [intake, checker("profanity", names.accepted), checker("grammar", names.checked("profanity")), checker("context", names.checked("grammar")), publisher, notifier],
    http: { "POST /comments": synchronous }
  }
}
