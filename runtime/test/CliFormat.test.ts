/** What `pnpm baton` prints: aligned tables, and the causation tree of `flow`. */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { causationTree, cell, table, type FlowEvent } from "../src/CliFormat.ts"

describe("table", () => {
  it("aligns columns under a capitalised header, and says when there is nothing", () => {
    expect(table(["id", "status"], [["a-long-id", "open"], ["b", undefined]])).toBe("ID         STATUS\na-long-id  open\nb          -\n")
    expect(table(["id"], [])).toBe("(none)\n")
  })

  it("keeps every row on one line, each cell starting at its column, for any cells", () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(undefined)), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 8 }), (rows) => {
        const out = table(["a", "b", "c"], rows).trimEnd().split("\n")
        expect(out).toHaveLength(rows.length + 1)
        const header = out[0]!
        const starts = [0, header.indexOf("B"), header.indexOf("C")]
        out.slice(1).forEach((line, r) => rows[r]!.forEach((v, i) => expect(line.slice(starts[i]!).startsWith(cell(v))).toBe(true)))
        // Two spaces only ever between columns: a script can split a row on them.
        out.slice(1).forEach((line, r) => expect(line.split(/ {2,}/)).toEqual(rows[r]!.map((v) => cell(v))))
      })
    )
  })
})

describe("causationTree", () => {
  it("puts each event under its cause, with its processor and status", () => {
    const events: ReadonlyArray<FlowEvent> = [
      { id: "1", type: "place-order", causationId: "1" },
      { id: "2", type: "order-created", causationId: "1", processor: "order-placement" },
      { id: "3", type: "payment-applied", causationId: "2", processor: "payment" },
      { id: "4", type: "email-sent", causationId: "2", processor: "notification", status: "pending" }
    ]
    expect(causationTree(events)).toBe(
      "place-order 1\n  └ order-created 2 (by order-placement)\n    └ payment-applied 3 (by payment)\n    └ email-sent 4 (by notification, pending)\n"
    )
  })

  it("lists each processor's delivery of an event when the answer has them", () => {
    const events: ReadonlyArray<FlowEvent> = [
      { id: "1", type: "place-order", causationId: "1", deliveries: [{ processor: "order-placement", status: "done" }] },
      { id: "2", type: "order-created", causationId: "1", deliveries: [{ processor: "payment", status: "failed" }, { processor: "notification", status: "pending" }] }
    ]
    expect(causationTree(events)).toBe("place-order 1 (order-placement done)\n  └ order-created 2 (payment failed, notification pending)\n")
  })

  it("shows every event exactly once, after its cause, for any causation (cycles and unknown causes included)", () => {
    const ids = ["a", "b", "c", "d", "e", "f"]
    fc.assert(
      fc.property(fc.uniqueArray(fc.constantFrom(...ids), { minLength: 1 }), fc.array(fc.option(fc.constantFrom(...ids, "elsewhere"), { nil: undefined }), { minLength: 6, maxLength: 6 }), (present, causes) => {
        const events = present.map((id, i) => ({ id, type: "t", causationId: causes[i] }))
        const out = causationTree(events).trimEnd().split("\n")
        const position = (id: string) => out.findIndex((l) => l.trimStart().replace(/^└ /, "") === `t ${id}`)
        for (const e of events) expect(out.filter((l) => l.trimStart().replace(/^└ /, "") === `t ${e.id}`)).toHaveLength(1)
        for (const e of events) {
          const cause = e.causationId
          // Indented: under its cause, which came before it.
          if (out[position(e.id)]!.startsWith(" ")) expect(position(cause!)).toBeLessThan(position(e.id))
        }
      })
    )
  })
})
