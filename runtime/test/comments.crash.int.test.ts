import { describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"

const { count, eventually, onDataDir, readStore } = Process

/** Crash runs; raise for a soak run. */
const runs = Math.max(2, Math.ceil(Number(process.env.BATON_CRASH_RUNS ?? 6) / 2))

const texts = ["A fine chapter.", "What a frak of a plot", "I think the the ending is weak", "buy at www.spam.example", "Lovely."]
const outcome = (text: string) => (text === "A fine chapter." || text === "Lovely." ? "published" : "rejected")

describe("comment posting across SIGKILL", () => {
  it(
    "killed while the checkers are working, every accepted comment ends published or rejected, its author notified once",
    async () => {
      // At least one comment to publish: its three checks keep it 'checking' for 450 ms, so a kill
      // within 250 ms of the first check finds the checkers at work whatever the others are.
      const posts = fc
        .tuple(fc.array(fc.constantFrom(...texts), { minLength: 4, maxLength: 14 }), fc.constantFrom("A fine chapter.", "Lovely."), fc.nat())
        .map(([others, fine, at]) => others.toSpliced(at % (others.length + 1), 0, fine))
      await fc.assert(
        fc.asyncProperty(posts, fc.integer({ min: 0, max: 250 }), async (comments, killAfterMs) => {
          await onDataDir(async ({ dataDir, start }) => {
            const env = { BATON_APP: "comments", BATON_CHECK_LATENCY_MS: "150" }
            const first = await start(env)
            const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${first.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
            const ids = comments.map(() => crypto.randomUUID())
            await Promise.all(comments.map((text, i) => client.publishAsync("initiate/post-comment", JSON.stringify({ id: ids[i], type: "post-comment", data: { author: `a${i}`, email: `a${i}@example.com`, text } }), { qos: 1 })))
            client.end(true)
            // Every comment was acknowledged (accepted). Killed a moment after the checkers started
            // (counted from the first comment seen being checked: on a busy machine the first check
            // can start later than a fixed delay after the acknowledgements, seen once at 57 ms).
            await eventually(() => readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM comments WHERE status = 'checking'") > 0), 10_000, "a comment being checked")
            await new Promise((r) => setTimeout(r, killAfterMs))
            await first.kill("SIGKILL")
            // Three checks of 150 ms each: some comments were still being checked when it died.
            expect(readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM comments WHERE status = 'checking'"))).toBeGreaterThan(0)
            const second = await start(env)
            await eventually(() => readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM comment_emails") === ids.length), 30_000, "every author to be notified")
            expect(await second.kill("SIGTERM")).toBe(0)
            readStore(dataDir, (db) => {
              comments.forEach((text, i) => {
                expect(db.prepare("SELECT status FROM comments WHERE id = ?").get(ids[i]!)?.status, text).toBe(outcome(text))
                expect(count(db, "SELECT COUNT(*) FROM comment_emails WHERE comment_id = ? AND template = ?", ids[i]!, `comment-${outcome(text)}`)).toBe(1)
              })
            })
          })
        }),
        { numRuns: runs, endOnFailure: true }
      )
    },
    300_000
  )
})
