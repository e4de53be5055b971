/**
 * `node bench/src/rrStore.ts <rounds> <round trips> <tree> [<tree> ...]`: the store's share of a
 * request-reply round trip on SQLite, without the broker: each tree's own store modules run the
 * transaction a round trip commits on one instance (the request appended to the ingress log
 * forwarded, its envelope id seen, the inbox row received, checked and marked done, the reply
 * added to the outbox) and then mark the reply sent, as the relay does. Prints the main thread's
 * CPU time per round trip (so other load on the machine counts little), in interleaved rounds,
 * and the medians with their pairwise ratio to the first tree's.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { randomUUID } from "node:crypto"
import { median } from "./lib.ts"

const [roundsArg = "8", countArg = "4000", ...trees] = process.argv.slice(2)
const count = Number(countArg)
type StoreModule = typeof import("../../packages/store/src/index.ts")
type EffectModule = typeof import("../../packages/store/node_modules/effect/dist/index.js")
const modules = await Promise.all(
  trees.map(async (tree) => ({
    tree,
    store: (await import(resolve(tree, "packages/store/src/index.ts"))) as StoreModule,
    // The tree's own effect: its store's statements are effects of that copy.
    Effect: ((await import(resolve(tree, "packages/store/node_modules/effect/dist/index.js"))) as EffectModule).Effect
  }))
)
const results = new Map<string, Array<number>>()
for (let round = 0; round < Number(roundsArg); round++) {
  for (const { tree, store: modules_, Effect } of round % 2 === 0 ? modules : [...modules].reverse()) {
    const dir = mkdtempSync(join(tmpdir(), "baton-rrstore-"))
    const { Sqlite, IngressLog, Outbox, Inbox } = modules_
    const store = await Sqlite.open({ path: join(dir, "baton.db") })
    const log = await IngressLog.make(store, { maxBytes: 10_000, previewBytes: 100 })
    const outbox = await Outbox.make(store)
    const inbox = await Inbox.make(store)
    const append = store.query("INSERT INTO ingress_log (topic, payload, size, client_id, received_at, instance, forwarded_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq")
    const payload = JSON.stringify({ id: randomUUID(), type: "ping", data: { n: 1 }, replyTo: "reply/c/replies", correlationId: randomUUID() })
    const bytes = Buffer.from(payload)
    const roundTrip = async () => {
      const id = randomUUID()
      const at = new Date().toISOString()
      const reply = await store.transaction(
        Effect.gen(function* () {
          const rows = yield* append.all("initiate/ping", bytes, bytes.length, "c", at, "", at)
          yield* log.firstSight(id, Number(rows[0]!.seq))
          yield* inbox.receive("ping", { envelopeId: id, topic: "accepted/ping", key: id, payload })
          yield* inbox.othersPending("ping", id)
          yield* inbox.settle("ping", id, "done")
          return yield* outbox.added("reply/c/replies", payload)
        })
      )
      const { seq } = reply()
      await outbox.sent(seq, seq)
    }
    for (let i = 0; i < 300; i++) await roundTrip()
    const before = process.threadCpuUsage()
    for (let i = 0; i < count; i++) await roundTrip()
    const used = process.threadCpuUsage(before)
    const us = (used.user + used.system) / count
    results.set(tree, [...(results.get(tree) ?? []), us])
    console.log(`round ${round} ${tree}: ${us.toFixed(1)} us CPU a round trip`)
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
const base = results.get(trees[0]!)!
for (const [tree, us] of results) console.log(`${tree}: median ${median(us).toFixed(1)} us CPU a round trip (pairwise ${median(us.map((u, i) => u / base[i]!)).toFixed(2)}x)`)
