/**
 * The two-file ingress (`BATON_FRONT=log`, docs/front-thread.md, section 3) across SIGKILL, a
 * switch of the mode and a restored front file, black-box: the runtime as a child process, real
 * MQTT clients, the files read from the data directory.
 *
 * The events are bare place-order objects: each gets its envelope id when it is judged, so a
 * second hand-over of one would be a second order (the seen envelope ids catch only a client's
 * resend of a full envelope; the front's mark is what must refuse it). Each carries its own e-mail
 * address, by which the order it became is found.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { spawn } from "node:child_process"
import { copyFileSync, existsSync, rmSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { backup, DatabaseSync } from "node:sqlite"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { cards } from "./orders.ts"

const { eventually, onDataDir, readStore } = Process
type Running = Process.Running

/** Runs of the switch property (each starts the runtime four times); `BATON_CRASH_RUNS` raises them for a soak run. */
const runs = Math.max(2, Math.ceil(Number(process.env.BATON_CRASH_RUNS ?? 6) / 3))

const frontFile = (dataDir: string) => join(dataDir, "front", "ingress.db")
const tag = (n: number) => `f${n}@example.com`
const bare = (n: number, keys: number) =>
  JSON.stringify({ customerId: `front-${n % keys}`, email: tag(n), items: [{ sku: "BOOK-1", qty: 1, price: 2.5 }], payment: { card: cards.approved } })

/**
 * Publishes `ns` at QoS 1 in waves of `wave`, each wave awaited (at least one group commit of the
 * ingress each); resolves with the numbers acknowledged before the connection died.
 */
const publish = async (url: string, ns: ReadonlyArray<number>, keys: number, wave = ns.length): Promise<Set<number>> => {
  const acked = new Set<number>()
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
  client.on("error", () => undefined)
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()))
  for (let i = 0; i < ns.length; i += wave) {
    const sent = Promise.allSettled(ns.slice(i, i + wave).map((n) => client.publishAsync("initiate/place-order", bare(n, keys), { qos: 1 }).then(() => void acked.add(n))))
    // Publishes in flight when the runtime dies never settle: the connection's close ends the wait.
    if ((await Promise.race([sent.then(() => "sent"), closed.then(() => "closed"), new Promise((r) => setTimeout(() => r("closed"), 15_000))])) === "closed") break
  }
  client.end(true)
  return acked
}

/** The orders placed, in the order order-placement placed them: the publish's number and its customer. */
const placed = (dataDir: string): ReadonlyArray<{ readonly n: number; readonly key: string }> =>
  readStore(dataDir, (db) =>
    db.prepare("SELECT email, customer_id FROM orders ORDER BY seq").all().map((r) => ({ n: Number(/^f(\d+)@/.exec(String(r.email))![1]), key: String(r.customer_id) }))
  )

/** The numbers of the events committed to the front's log (the runtime stopped or killed). */
const committedToFront = (dataDir: string): ReadonlyArray<number> => {
  const db = new DatabaseSync(frontFile(dataDir), { readOnly: true })
  try {
    return db.prepare("SELECT payload FROM ingress_log ORDER BY seq").all().map((r) => (JSON.parse(Buffer.from(r.payload as Uint8Array).toString()) as { email: string }).email).map((e) => Number(/^f(\d+)@/.exec(e)![1]))
  } finally {
    db.close()
  }
}

/** Each of `expected` placed once and nothing else; `acked` of one customer placed in the order published. */
const placedOnce = (dataDir: string, expected: Iterable<number>, acked: ReadonlySet<number>) => {
  const orders = placed(dataDir)
  expect(orders.map((o) => o.n).sort((a, b) => a - b), "every event placed once, none twice").toEqual([...new Set(expected)].sort((a, b) => a - b))
  for (const key of new Set(orders.map((o) => o.key))) {
    const ofKey = orders.filter((o) => o.key === key && acked.has(o.n)).map((o) => o.n)
    expect(ofKey, `acknowledged events of ${key} in the order published`).toEqual([...ofKey].sort((a, b) => a - b))
  }
}

const settle = async (dataDir: string, n: number) => {
  await eventually(() => placed(dataDir).length >= n, 30_000, `${n} orders placed`)
  // A second hand-over would come at once after the first: give it time to show.
  await new Promise((r) => setTimeout(r, 300))
}

const stop = async (running: Running) => expect(await running.kill("SIGTERM"), "a clean stop").toBe(0)

/** Starts the runtime expecting it to refuse; its exit code and stderr. */
const refused = (dataDir: string, env: Record<string, string>): Promise<{ readonly code: number | string; readonly stderr: string }> =>
  new Promise((resolve, reject) => {
    const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
    const child = spawn(process.execPath, [...Process.nodeOptions, main], {
      env: { ...process.env, BATON_MQTT_PORT: "0", BATON_WS_PORT: "off", BATON_HTTP_PORT: "0", BATON_DATA_DIR: dataDir, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString()
      if (/runtime ready/.test(stdout)) child.kill("SIGKILL")
    })
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()))
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      clearTimeout(timer)
      if (/runtime ready/.test(stdout)) reject(new Error(`the runtime started:\n${stdout}${stderr}`))
      else resolve({ code: code ?? signal ?? "unknown", stderr })
    })
  })

describe("the two-file ingress (BATON_FRONT=log) across SIGKILL, a switch of the mode and a restore", () => {
  it(
    "killed with events committed to the front's file and not handed over (ingress-committed), then started with the mode off: every committed event placed once (the left file drained), none twice after later restarts, off and on again",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 8, max: 24 }), fc.integer({ min: 1, max: 3 }), async (hit, count, keys) => {
          await onDataDir(async ({ dataDir, start }) => {
            const ns = Array.from({ length: count }, (_, n) => n)
            const first = await start({ BATON_FRONT: "log", BATON_CRASH_AT: `ingress-committed:${hit}` })
            const acked = await publish(`mqtt://127.0.0.1:${first.mqttPort}`, ns, keys, 4)
            const exit = await Promise.race([first.exited, new Promise((r) => setTimeout(() => r("not reached"), 10_000))])
            expect(exit, `killed itself at ingress-committed:${hit}`).toBe("SIGKILL")
            const committed = committedToFront(dataDir)
            // The batch of the kill was committed, not acknowledged: the file holds more than the acknowledged.
            expect(committed.length, "events committed and not acknowledged at the kill").toBeGreaterThan(acked.size)
            for (const n of acked) expect(committed, `acknowledged event ${n} in the front's file`).toContain(n)

            const off = await start({ BATON_FRONT: "off" })
            await settle(dataDir, new Set(committed).size)
            await stop(off)
            placedOnce(dataDir, committed, acked)

            // Off again, then on again: what was drained stays drained, and new events are taken
            // in each mode (after the drain's prune the front's numbers go on above its mark).
            const again = await start({ BATON_FRONT: "off" })
            await publish(`mqtt://127.0.0.1:${again.mqttPort}`, [100, 101], keys)
            await settle(dataDir, new Set(committed).size + 2)
            await stop(again)
            const on = await start({ BATON_FRONT: "log" })
            await publish(`mqtt://127.0.0.1:${on.mqttPort}`, [102, 103], keys)
            await settle(dataDir, new Set(committed).size + 4)
            await stop(on)
            placedOnce(dataDir, [...committed, 100, 101, 102, 103], acked)
          })
        }),
        { numRuns: runs, endOnFailure: true }
      )
    },
    300_000
  )

  it(
    "an older copy of the front's file put back (a restore): the runtime refuses to start, saying why, and nothing is placed twice; without the file it starts again",
    async () => {
      await onDataDir(async ({ dataDir, start }) => {
        const copy = join(dataDir, "ingress.db.copy")
        const first = await start({ BATON_FRONT: "log" })
        const url = `mqtt://127.0.0.1:${first.mqttPort}`
        expect((await publish(url, [0, 1, 2, 3, 4], 2)).size).toBe(5)
        await settle(dataDir, 5)
        // A consistent copy while the runtime runs, as a backup tool takes it.
        const source = new DatabaseSync(frontFile(dataDir), { readOnly: true })
        await backup(source, copy)
        source.close()
        expect((await publish(url, [5, 6, 7, 8, 9], 2)).size).toBe(5)
        await settle(dataDir, 10)
        await stop(first)

        for (const suffix of ["", "-wal", "-shm"]) rmSync(frontFile(dataDir) + suffix, { force: true })
        copyFileSync(copy, frontFile(dataDir))
        const { code, stderr } = await refused(dataDir, { BATON_FRONT: "log" })
        expect(code, `a refusal, not a start:\n${stderr}`).not.toBe(0)
        const all = new Set(Array.from({ length: 10 }, (_, n) => n))
        // One readable line naming the file and what is wrong with it.
        expect(stderr, "the reason on stderr").toMatch(/front\/ingress\.db.*(older|restor|behind|below)|(older|restor|behind|below).*front\/ingress\.db/i)
        placedOnce(dataDir, all, all)

        // The operator's way out: without the file (a new log, its mark from 0) the runtime starts.
        for (const suffix of ["", "-wal", "-shm"]) rmSync(frontFile(dataDir) + suffix, { force: true })
        expect(existsSync(frontFile(dataDir))).toBe(false)
        const second = await start({ BATON_FRONT: "log" })
        await publish(`mqtt://127.0.0.1:${second.mqttPort}`, [10, 11], 2)
        await settle(dataDir, 12)
        await stop(second)
        placedOnce(dataDir, [...all, 10, 11], all)
      })
    },
    120_000
  )
})
