/**
 * A drain that keeps failing (not an outage: a trigger of the real SQLite store raises on the
 * forwarded marks) is retried every `retryMs` but logged once per streak, again only when its
 * reason changes, and once when a drain goes through again (issue #15).
 */
import { describe, expect, it } from "vitest"
import { Result } from "effect"
import { Log } from "@baton/core"
import { IngressLog, Outbox, Rejections, Sqlite } from "@baton/store"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Ingress from "../src/Ingress.ts"

const contracts = Ingress.contractsOf([{ name: "ping", processors: [], initiating: [{ name: "ping", decode: Result.succeed }] }])

describe("Ingress: a drain failing again and again", () => {
  it("logs one line per failure streak (and per change of reason), one when it drains again", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    let ingress: Ingress.Ingress | undefined
    try {
      const exec = (sql: string) => store.run(store.query(sql).run())
      const hold = (reason: string) => exec(`CREATE TRIGGER hold BEFORE UPDATE ON ingress_log BEGIN SELECT RAISE(ABORT, '${reason}'); END`)
      const outbox = await Outbox.make(store)
      const log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16 })
      let reads = 0
      const counted: IngressLog.IngressLog = { ...log, unforwarded: (n) => (reads++, log.unforwarded(n)) }
      const logger = Log.memory()
      ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log: counted, outbox, reject: ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger }), logger, retryMs: 2 })
      await ingress.start(() => undefined)
      const lines = (event: string) => logger.lines.filter((l) => l.includes(event))
      /** Waits until `n` more drains read the log. */
      const drains = async (n: number) => {
        const until = reads + n
        while (reads < until) await new Promise((r) => setTimeout(r, 1))
      }

      await hold("held by the test")
      await ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ n: 1 })), null)
      await drains(20)
      expect(lines("ingress drain failed")).toEqual([expect.stringContaining("held by the test")])
      await exec("DROP TRIGGER hold")
      await hold("held for another reason")
      await drains(20)
      expect(lines("ingress drain failed")).toEqual([expect.stringContaining("held by the test"), expect.stringContaining("held for another reason")])
      expect(lines("ingress drains again")).toEqual([])

      await exec("DROP TRIGGER hold")
      while ((await outbox.size()) === 0) await new Promise((r) => setTimeout(r, 1))
      await ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ n: 2 })), null)
      while ((await outbox.size()) < 2) await new Promise((r) => setTimeout(r, 1))
      expect(lines("ingress drain failed")).toHaveLength(2)
      expect(lines("ingress drains again")).toHaveLength(1)
      expect(logger.lines.at(-1)).toContain("ingress drains again")
    } finally {
      ingress?.stop()
      await store.close()
    }
  })
})
