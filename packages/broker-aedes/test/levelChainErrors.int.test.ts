/** The level store's per-client order (#inOrder) on its error paths. */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, expect, it } from "vitest"
import { Level } from "level"
import persistenceLevel from "aedes-persistence-level"

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const open = async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-rev-chain-"))
  dirs.push(dir)
  const store = persistenceLevel(new Level(dir)) as any
  await store.setup({ id: "b" })
  return store
}
const packet = (k: number) => ({ cmd: "publish", topic: "t", payload: Buffer.from(String(k)), qos: 1, retain: false, dup: false, brokerId: "b", brokerCounter: k })

it("a failed update reports its error, in order, and the client's later operations still settle", async () => {
  const store = await open()
  const a = store.asyncPersistence
  const order: Array<string> = []
  const e1 = a.outgoingEnqueue({ clientId: "x" }, packet(1)).then(() => order.push("enq1"))
  // No such packet (never enqueued): rejects.
  const bad = a.outgoingUpdate({ id: "x" }, { ...packet(99), messageId: 7 }).then(
    () => order.push("bad ok"),
    (e: Error) => order.push(`bad ${e.message}`)
  )
  const e2 = a.outgoingEnqueue({ clientId: "x" }, packet(2)).then(() => order.push("enq2"))
  const u1 = a.outgoingUpdate({ id: "x" }, { ...packet(1), messageId: 1 }).then(() => order.push("upd1"))
  await Promise.all([e1, bad, e2, u1])
  expect(order).toEqual(["enq1", "bad no such packet", "enq2", "upd1"])
  expect(a.chainedClients).toBe(0)
  expect(a.chainedClients).toBe(0)
  await a.destroy()
}, 10_000)

it("a batch for several clients, one part failing: it reports the error, each client's later operations settle after it, none hangs", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-rev-chain-"))
  dirs.push(dir)
  const level = new Level(dir) as any
  const put = level.put.bind(level)
  // y's copy of message 1 fails to be written, slowly; x's is written at once.
  let failed = false
  level.put = (key: string, ...rest: Array<unknown>) =>
    key.includes("y") && !failed && (failed = true) ? new Promise((_, reject) => setTimeout(() => reject(new Error("disk full")), 50)) : put(key, ...rest)
  const store = persistenceLevel(level) as any
  await store.setup({ id: "b" })
  const a = store.asyncPersistence
  const order: Array<string> = []
  const p1 = a.outgoingEnqueueCombi([{ clientId: "x" }, { clientId: "y" }], packet(1)).then(() => order.push("batch ok"), (e: Error) => order.push(`batch ${e.message}`))
  const px = a.outgoingEnqueue({ clientId: "x" }, packet(2)).then(() => order.push("x2"))
  const py = a.outgoingEnqueue({ clientId: "y" }, packet(3)).then(() => order.push("y3"))
  await Promise.all([p1, px, py])
  expect(order).toEqual(["batch disk full", "x2", "y3"])
  expect(a.chainedClients).toBe(0)
  await a.destroy()
}, 10_000)
