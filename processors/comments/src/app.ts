/**
 * The comment-posting app (docs/concepts.md, section 3), written with the public API only
 * (`@baton/sdk`): asynchronous accept. `initiate/post-comment` is acknowledged as soon as it is
 * durable and announced as `comment-accepted`; then the profanity, grammar and context checkers
 * run one after the other (each a processor, `BATON_CHECK_LATENCY_MS`, a second by default, each),
 * and the outcome, `comment-published` or `comment-rejected` with the reason, is e-mailed to the
 * author (`BATON_SMTP_URL`, or kept in the store without it). `POST /comments` does the same work
 * synchronously, for contrast: the caller waits for all of it.
 */
import { Baton, ddl, decode, Effect, Rejected, Schema, SqlClient, type Context, type Event } from "@baton/sdk"
import { Mailer } from "@baton/order-entry"
import { Result } from "effect"
import * as Checks from "./Checks.ts"

export { Checks }

export const PostCommentData = Schema.Struct({
  author: Schema.NonEmptyString.check(Schema.isMaxLength(64)),
  email: Schema.String.check(Schema.isPattern(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, { message: "must be an e-mail address" })),
  text: Schema.NonEmptyString.check(Schema.isMaxLength(4000))
})
export type PostComment = typeof PostCommentData.Type
export const PostComment = Baton.initiating("post-comment", PostCommentData, { key: (c) => c.author })

/** An accepted comment: the post and its id (the id of the initiating event). */
export const CommentData = Schema.Struct({ commentId: Schema.String, ...PostCommentData.fields })
export type Comment = typeof CommentData.Type
export const CommentAccepted = Baton.event("comment-accepted", CommentData)

const Check = Schema.Literals(["profanity", "grammar", "context"])

/** A checker's verdict on a comment. */
export const CheckedData = Schema.Struct({ ...CommentData.fields, check: Check, ok: Schema.Boolean, reason: Schema.optionalKey(Schema.String) })
export type Checked = typeof CheckedData.Type
const checkedEvent = <C extends Checks.Check>(check: C) => Baton.event(`${check}-checked`, CheckedData)
export const ProfanityChecked = checkedEvent("profanity")
export const GrammarChecked = checkedEvent("grammar")
export const ContextChecked = checkedEvent("context")

export const DecidedData = Schema.Struct({
  commentId: Schema.String,
  author: Schema.String,
  email: Schema.String,
  status: Schema.Literals(["published", "rejected"]),
  check: Schema.optionalKey(Check),
  reason: Schema.optionalKey(Schema.String)
})
export type Decided = typeof DecidedData.Type
export const CommentPublished = Baton.event("comment-published", DecidedData)
export const CommentRejected = Baton.event("comment-rejected", DecidedData)

/** The record of the mail an event caused. */
export const EmailSent = Baton.event(
  "email-sent",
  Schema.Struct({ commentId: Schema.String, to: Schema.String, template: Schema.String, messageId: Schema.String })
)

export const names = {
  postComment: PostComment.type,
  accepted: CommentAccepted.type,
  checked: (check: Checks.Check) => `${check}-checked`,
  published: CommentPublished.type,
  rejected: CommentRejected.type
} as const

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

/** `BATON_CHECK_LATENCY_MS`: how long each checker takes (a second by default). */
export const checkLatencyOf = (env: Context["env"]): number => {
  const raw = env.BATON_CHECK_LATENCY_MS
  if (raw === undefined || raw === "") return 1000
  const n = Number(raw)
  if (raw.trim() === "" || !Number.isInteger(n) || n < 0) throw new Error(`BATON_CHECK_LATENCY_MS must be a whole number of 0 or more, got '${raw}'`)
  return n
}

export interface Options {
  /** Instead of one made from `BATON_SMTP_URL`. */
  readonly mailer?: Mailer.Mailer
  /** Instead of `BATON_CHECK_LATENCY_MS`. */
  readonly checkLatencyMs?: number
}

/** The app, with settings given rather than read from the environment (a test's mailer, a short latency). */
export const configure = (options: Options = {}) =>
  Baton.app("comments", (ctx) => {
    const { clock } = ctx
    const checkLatencyMs = options.checkLatencyMs ?? checkLatencyOf(ctx.env)
    const mailer = options.mailer ?? Mailer.make({ smtpUrl: ctx.env.BATON_SMTP_URL })
    const insert = ctx.query("INSERT INTO comments (id, author, email, text, status, via, accepted_at) VALUES (?, ?, ?, ?, 'checking', ?, ?) ON CONFLICT DO NOTHING")
    const decide = ctx.query("UPDATE comments SET status = ?, reason = ?, decided_at = ? WHERE id = ? AND status = 'checking'")
    const get = ctx.query("SELECT status, reason FROM comments WHERE id = ?")
    const insertEmail = ctx.query(
      "INSERT INTO comment_emails (cause_id, comment_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    )
    const email = ctx.query("SELECT comment_id, recipient, template, message_id FROM comment_emails WHERE cause_id = ?")

    const intake = Baton.processor({
      name: "comment-intake",
      on: PostComment,
      handle: function* (event) {
        const c = event.data
        const commentId = event.correlationId
        yield* insert.run(commentId, c.author, c.email, c.text, "mqtt", clock.now().toISOString())
        return [CommentAccepted.make({ commentId, ...c }, { key: commentId })]
      },
      reply: (event) => ({ commentId: event.correlationId, status: "accepted" })
    })

    /** A checker: waits its latency outside the transaction, then announces its verdict. */
    const checker = (check: Checks.Check, after: Event<string, Comment> | Event<string, Checked>, next: Event<string, Checked>) =>
      Baton.processor<typeof after, Checks.Verdict | undefined>({
        name: `${check}-checker`,
        on: after,
        prepare: function* (event) {
          const c = event.data
          if ("ok" in c && !c.ok) return undefined // rejected earlier: nothing to check
          yield* Effect.promise(() => sleep(checkLatencyMs))
          return Checks.run[check](c.text)
        },
        handle: (event, verdict) => {
          if (verdict === undefined) return Effect.succeed([])
          const { commentId, author, email: to, text } = event.data
          return Effect.succeed([next.make({ commentId, author, email: to, text, check, ...verdict })])
        }
      })

    const publisher = Baton.processor({
      name: "comment-publisher",
      on: [ProfanityChecked, GrammarChecked, ContextChecked],
      handle: function* (event) {
        const c = event.data
        if (c.ok && c.check !== "context") return []
        const status = c.ok ? "published" : "rejected"
        yield* decide.run(status, c.reason ?? null, clock.now().toISOString(), c.commentId)
        const row = yield* get.get(c.commentId)
        if (row === undefined) return yield* Effect.fail(new Rejected(`unknown comment ${c.commentId}`))
        const data: Decided = { commentId: c.commentId, author: c.author, email: c.email, status, ...(c.ok ? {} : { check: c.check, reason: c.reason ?? "" }) }
        return [(c.ok ? CommentPublished : CommentRejected).make(data)]
      }
    })

    const record = (causeId: string, d: Decided, sent: Mailer.Sent) => {
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
    const notifier = Baton.processor({
      name: "comment-notifier",
      on: [CommentPublished, CommentRejected],
      prepare: function* (event) {
        // Outside the transaction: a read on the store's own client (no transaction to join).
        if ((yield* Effect.provideService(recorded(event.id), SqlClient.SqlClient, ctx.sql)) !== undefined) return undefined
        return yield* Effect.tryPromise(() => mailer.send(letter(event.data)))
      },
      handle: function* (event, sent) {
        if (sent !== undefined) yield* record(event.id, event.data, sent)
        const data = yield* recorded(event.id)
        return data === undefined ? [] : [EmailSent.make(data)]
      }
    })

    const decodePost = decode(PostCommentData)
    /** The synchronous decision and its mail's record (one transaction). */
    const decidedSync = Effect.fnUntraced(function* (decided: Decided, sent: Mailer.Sent) {
      yield* decide.run(decided.status, decided.reason ?? null, clock.now().toISOString(), decided.commentId)
      yield* record(`http:${decided.commentId}`, decided, sent)
    })

    /** `POST /comments`: the same checks and notification, while the caller waits. */
    const synchronous = async (body: Readonly<Record<string, unknown>> | undefined) => {
      const input = decodePost(body ?? {})
      if (Result.isFailure(input)) return { status: 400, body: { error: "bad request", reason: input.failure.map((i) => `${i.path}: ${i.message}`).join("; "), issues: input.failure } }
      const c = input.success
      const commentId = clock.newId()
      await ctx.transaction(insert.run(commentId, c.author, c.email, c.text, "http", clock.now().toISOString()))
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
      await ctx.transaction(decidedSync(decided, sent))
      return { status: 200, body: decided }
    }

    return {
      name: "comments",
      initiating: [PostComment],
      events: [CommentAccepted, ProfanityChecked, GrammarChecked, ContextChecked, CommentPublished, CommentRejected, EmailSent],
      migrations,
      processors: [
        intake,
        checker("profanity", CommentAccepted, ProfanityChecked),
        checker("grammar", ProfanityChecked, GrammarChecked),
        checker("context", GrammarChecked, ContextChecked),
        publisher,
        notifier
      ],
      http: { "POST /comments": synchronous }
    }
  })

export default configure()
