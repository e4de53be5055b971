import { describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { checkExecuted, corrected, envelope, openEntries, post, tradeArb, unblocked, unrepairable, waitFor, withIds, type GeneratedTrade } from "./trading.ts"

const { count, onDataDir, readStore } = Process

/** Crash runs; raise for a soak run. */
const runs = Number(process.env.BATON_CRASH_RUNS ?? 6)
const accounts = ["ACC-1", "ACC-2", "ACC-3", "ACC-4"]

const scenario = fc.record({
  trades: fc.array(tradeArb(accounts), { minLength: 10, maxLength: 30 }),
  // In the middle of a repair, of a trade's execution, of a publish.
  kill: fc.constantFrom("handler@workflow-processor", "processed-committed@workflow-processor", "handler", "processed-committed", "outbox-published"),
  hit: fc.nat()
})

/** Publishes in order over one connection until the runtime dies; resolves with how many got a PUBACK. */
const publishUntilDead = async (port: number, trades: ReadonlyArray<GeneratedTrade>): Promise<number> => {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 })
  let acked = 0
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()))
  const all = (async () => {
    for (const [n, t] of trades.entries()) {
      await client.publishAsync("initiate/place-trade", envelope(t, n), { qos: 1 })
      acked++
    }
  })()
  await Promise.race([all.catch(() => undefined), closed])
  client.end(true)
  return acked
}

const executedIn = (dataDir: string) => (account: string) =>
  readStore(dataDir, (db) => db.prepare("SELECT trade_id FROM trades WHERE account = ? ORDER BY seq").all(account).map((r) => String(r.trade_id)))

describe("the workflow event pattern across SIGKILL", () => {
  it(
    "killed while trades are parked and repairs are in flight: after the restart the parked trades, the dashboard and the order per account are intact",
    async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async (s) => {
          const trades = withIds(s.trades)
          const env = { BATON_APP: "trading" }
          await onDataDir(async ({ dataDir, start }) => {
            const repairs = trades.filter((t) => t.kind !== "ok").length
            const hit = 1 + (s.hit % (s.kill.endsWith("@workflow-processor") ? Math.max(1, repairs) : 2 * trades.length))
            const first = await start({ ...env, BATON_CRASH_AT: `${s.kill}:${hit}` })
            await Process.watchEverything(`mqtt://127.0.0.1:${first.mqttPort!}`)
            await publishUntilDead(first.mqttPort!, trades)
            await Promise.race([first.exited, new Promise((r) => setTimeout(r, 1000))])
            await first.kill("SIGKILL")

            const second = await start(env)
            // The client resends everything, in order: what was already logged is recognised.
            await publishUntilDead(second.mqttPort!, trades)
            const executed = executedIn(dataDir)
            const failingAccounts = accounts.filter((a) => trades.some((t) => t.account === a && unrepairable.includes(t.kind)))
            await waitFor(() => accounts.every((a) => unblocked(trades, a).every((id) => executed(a).includes(id))), "the unblocked trades")
            await waitFor(async () => (await openEntries(second.httpPort)).length === failingAccounts.length, "one dashboard entry per failing account")
            // Everything behind each account's first failure is parked, nothing more, nothing less
            // (the last trades may still be on their way to the parking when the dashboard fills).
            const behind = (a: string) => {
              const mine = trades.filter((t) => t.account === a)
              return mine.length - mine.findIndex((t) => unrepairable.includes(t.kind)) - 1
            }
            const parked = (db: Parameters<Parameters<typeof readStore>[1]>[0], a: string) =>
              count(db, "SELECT COUNT(*) FROM inbox WHERE processor = 'trade-execution' AND key = ? AND status = 'parked'", a)
            await waitFor(() => readStore(dataDir, (db) => failingAccounts.every((a) => parked(db, a) >= behind(a))), "the trades behind each failure parked")
            readStore(dataDir, (db) => {
              for (const a of failingAccounts) expect(parked(db, a), `parked trades of ${a}`).toBe(behind(a))
              expect(db.prepare("SELECT key FROM held_keys ORDER BY key").all().map((r) => String(r.key))).toEqual(failingAccounts)
            })
            // Resolve the dashboard until every trade has executed or been discarded.
            const index = new Map(trades.map((t, n) => [t.id, { t, n }]))
            for (let resolved = 0; resolved < trades.filter((t) => unrepairable.includes(t.kind)).length; resolved++) {
              let open: Awaited<ReturnType<typeof openEntries>> = []
              await waitFor(async () => (open = await openEntries(second.httpPort)).length > 0, "a dashboard entry")
              const entry = open[0]!
              const { t, n } = index.get(entry.trail[0]!)!
              const answer = t.resolution === "resubmit" ? await post(second.httpPort, `/dashboard/${entry.id}/resubmit`, corrected(t, n)) : await post(second.httpPort, `/dashboard/${entry.id}/discard`, { reason: "test" })
              expect(answer.status).toBe(200)
            }
            const expected = trades.filter((t) => !(unrepairable.includes(t.kind) && t.resolution === "discard")).length
            await waitFor(() => accounts.reduce((sum, a) => sum + executed(a).length, 0) === expected, "every trade to execute")
            expect(await second.kill("SIGTERM")).toBe(0)
            checkExecuted(executed, trades)
            readStore(dataDir, (db) => {
              expect(count(db, "SELECT COUNT(*) FROM held_keys")).toBe(0)
              expect(count(db, "SELECT COUNT(*) FROM inbox WHERE status IN ('pending', 'parked')")).toBe(0)
            })
          })
        }),
        { numRuns: runs, endOnFailure: true }
      )
    },
    300_000
  )
})
